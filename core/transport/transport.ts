import type { JobQueueMessage, TaskQueueMessage } from '../../models';

export const JOBS_QUEUE = 'coremachine-jobs';
export const TASKS_QUEUE = 'coremachine-tasks';
/** Other systems submit jobs here with `{jobType, parameters}` (models/api.ts JobSubmissionMessage). */
export const SUBMISSIONS_QUEUE = 'coremachine-submissions';

/** What the engine needs from a message bus. Implementations: in-process (dev, tests), Service Bus. */
export interface Transport {
  readonly name: string;
  sendJobMessages(messages: readonly JobQueueMessage[]): Promise<void>;
  sendTaskMessages(messages: readonly TaskQueueMessage[]): Promise<void>;
  /** Send later: the message becomes visible at `at` (Service Bus scheduled messages). */
  scheduleTaskMessages(messages: readonly TaskQueueMessage[], at: Date): Promise<void>;
  /**
   * Messages sent but not yet completed, when the transport can tell (in-process can; Service Bus
   * would need management rights, so it says undefined). The janitor does not re-send while
   * messages are still queued: a deep backlog is not a lost message.
   */
  backlog?(): number | undefined;
  close(): Promise<void>;
}
