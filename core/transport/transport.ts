import type { JobEvent, JobQueueMessage, SubmissionReceipt, TaskQueueMessage } from '../../models';
import type { OperationCounts } from './operation-counts';

// The entity names live with the messages they carry (models/messages.ts), which also keeps a
// receipt's replyTo off them.
export { EVENTS_TOPIC, JOBS_QUEUE, SUBMISSIONS_QUEUE, TASKS_QUEUE } from '../../models/messages';
/** The subscription the Bicep and the emulator create with the topic (others can be added freely). */
export const EVENTS_DEFAULT_SUBSCRIPTION = 'default';

/** A copy of a received message under a new messageId (duplicate detection would drop the old one). */
export interface RescheduledMessage {
  messageId: string;
  body: unknown;
  applicationProperties: Record<string, string | number | boolean>;
}

/** A page of a stage's task messages read from the database, and the task_index it ended at. */
export interface StageTaskPage {
  messages: TaskQueueMessage[];
  lastIndex: number;
}

/**
 * Reads the stage's (or one chunk's) QUEUED tasks after `afterIndex`, in task order: the cursor a
 * pulling transport keeps is (jobId, stage, afterIndex, resend), nothing else.
 */
export type StageTaskPageReader = (afterIndex: number, limit: number) => Promise<StageTaskPage>;

/** What the engine needs from a message bus. Implementations: in-process (dev, tests), Service Bus. */
export interface Transport {
  readonly name: string;
  /**
   * Whether a sent message outlives this process (Service Bus) or is lost with it (in-process).
   * After a restart the engine rebuilds a non-durable transport's messages from PostgreSQL.
   */
  readonly durable: boolean;
  sendJobMessages(messages: readonly JobQueueMessage[]): Promise<void>;
  /**
   * `dispatchSize`: how many tasks the dispatch these messages are a page of holds (a stage chunk),
   * which sets how many a message carries (core/transport/task-packing.ts); the count sent when unset.
   */
  sendTaskMessages(messages: readonly TaskQueueMessage[], options?: { dispatchSize?: number }): Promise<void>;
  /** Send later: the message becomes visible at `at` (Service Bus scheduled messages). */
  scheduleTaskMessages(messages: readonly TaskQueueMessage[], at: Date): Promise<void>;
  /** Job events to subscribers (the events topic); each with its deterministic messageId. */
  publishEvents(events: readonly JobEvent[]): Promise<void>;
  /**
   * Messages sent but not yet completed, when the transport can tell (in-process can; Service Bus
   * would need management rights, so it says undefined). The janitor does not re-send while
   * messages are still queued: a deep backlog is not a lost message.
   */
  backlog?(): number | undefined;
  /**
   * Sends a copy of a received message to `queue`, visible at `at`: how the settlement policy
   * gives a message back after a transient fault without using up its delivery count.
   */
  reschedule?(queue: string, message: RescheduledMessage, at: Date): Promise<void>;
  /**
   * Optional: takes a whole stage's task messages as a cursor that the transport reads on demand
   * (backpressure), resolving once handed over. For a transport that holds messages in the
   * process; one that stores them durably (Service Bus) leaves this out and is sent every page.
   * A crash loses the cursor exactly as it loses in-memory messages; the janitor's re-dispatch
   * finds the stage's QUEUED tasks in the database either way.
   */
  pullStageTasks?(stage: { jobId: string; stage: number; chunk?: { from: number; through?: number } }, readPage: StageTaskPageReader): Promise<void>;
  /**
   * Sends a submission's receipt to the queue its submitter named (`replyTo`), with the
   * correlationId it carries back.
   */
  sendReceipt(queue: string, receipt: SubmissionReceipt, properties: { messageId: string; correlationId: string | null }): Promise<void>;
  /**
   * The Service Bus operations and Functions executions spent through this transport since it was
   * made (core/transport/operation-counts.ts): the live counter, which the hosts of its messages
   * (consumers, triggers) add to as well.
   */
  operations?(): OperationCounts;
  close(): Promise<void>;
}
