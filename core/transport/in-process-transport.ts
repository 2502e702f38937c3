import { jobMessageId, type JobEvent, type JobQueueMessage, type SubmissionReceipt, type TaskQueueMessage } from '../../models';
import { DEFAULT_MAX_PACKED_TASKS, dispatchSizeOf, packTaskMessages, tasksIn, type OutgoingTaskMessage } from './task-packing';
import { JobEventBus } from './job-event-bus';
import { OperationCounts } from './operation-counts';
import { InProcessQueue, type QueueMessage, type QueueOptions } from './in-process-queue';
import { traceProperties } from '../telemetry';
import { JOBS_QUEUE, SUBMISSIONS_QUEUE, TASKS_QUEUE, type RescheduledMessage, type StageTaskPageReader, type Transport } from './transport';

const DEFAULT_QUEUE_OPTIONS: QueueOptions = {
  // Matches the Bicep queues: 5 minute lock (renewed by the consumer), 10 deliveries.
  lockDurationMs: 5 * 60_000,
  maxDeliveryCount: 10,
  duplicateDetectionWindowMs: 0,
};

/** The jobs and tasks queues in memory, for `coremachine dev`, the demo and the tests. */
export class InProcessTransport implements Transport {
  readonly name = 'in-process';
  /** Messages live in this process's memory: they die with it. */
  readonly durable = false;
  readonly jobs: InProcessQueue;
  readonly tasks: InProcessQueue;
  /** Job submissions by message from other systems (`{jobType, parameters}`). */
  readonly submissions: InProcessQueue;
  /** Job events out: what the events topic's subscriptions are in Azure (`machine.events.subscribe`). */
  readonly events = new JobEventBus();
  /** The queues submitters named for their receipts, made on first use as Service Bus queues are made by their owners. */
  private readonly replies = new Map<string, InProcessQueue>();
  private readonly queueOptions: QueueOptions;
  /** Every queue of this transport counts into this one counter (operations()). */
  private readonly operationCounts = new OperationCounts();
  /** The most tasks one message carries (1: no packing). */
  private readonly maxPackedTasks: number;

  constructor(options: Partial<QueueOptions> & { maxPackedTasks?: number } = {}) {
    const { maxPackedTasks, ...rest } = options;
    this.maxPackedTasks = maxPackedTasks ?? DEFAULT_MAX_PACKED_TASKS;
    const queueOptions = { ...DEFAULT_QUEUE_OPTIONS, ...rest };
    this.queueOptions = queueOptions;
    this.jobs = new InProcessQueue(JOBS_QUEUE, queueOptions, this.operationCounts);
    // A pack counts its tasks toward the feeder's low-water mark: the queue reads ahead by tasks.
    this.tasks = new InProcessQueue(TASKS_QUEUE, { ...queueOptions, weightOf: tasksIn }, this.operationCounts);
    this.submissions = new InProcessQueue(SUBMISSIONS_QUEUE, queueOptions, this.operationCounts);
  }

  sendJobMessages(messages: readonly JobQueueMessage[]): Promise<void> {
    const traceparent = traceProperties();
    this.jobs.send(
      messages.map((body) => ({ messageId: jobMessageId(body), body, applicationProperties: { jobId: body.jobId, stage: body.stage, ...traceparent } })),
    );
    return Promise.resolve();
  }

  sendTaskMessages(messages: readonly TaskQueueMessage[], options: { dispatchSize?: number } = {}): Promise<void> {
    this.tasks.send(this.packed(messages, traceProperties(), options.dispatchSize));
    return Promise.resolve();
  }

  /** Task messages as they go on the queue: packed as a Service Bus sender packs them (core/transport/task-packing.ts). */
  private packed(messages: readonly TaskQueueMessage[], traceparent = traceProperties(), dispatchSize?: number) {
    return packTaskMessages(messages, this.maxPackedTasks, dispatchSize).map((message) => toQueueMessage(message, traceparent));
  }

  publishEvents(events: readonly JobEvent[]): Promise<void> {
    // What the events topic would be sent, whether or not anyone subscribes here.
    this.operationCounts.add('send', events.length);
    return this.events.publish(events);
  }

  /**
   * The stage's messages stay in the database until the tasks queue runs low: memory holds a
   * cursor per stage, not a message per task. When the queue runs low and no other source waits,
   * the first page is read before this resolves (a failure leaves the outbox row for the sweep,
   * and a small stage is queued in full at once); the rest is attached as a source. Messages carry the trace context of the hand-over.
   */
  async pullStageTasks(stage: { jobId: string; stage: number; chunk?: { from: number; through?: number } }, readPage: StageTaskPageReader): Promise<void> {
    const traceparent = traceProperties();
    const pageSize = this.tasks.feeder.pageSize;
    const { dispatchSize } = dispatchSizeOf(stage);
    let afterIndex = (stage.chunk?.from ?? 0) - 1;
    const next = async (limit: number) => {
      const page = await readPage(afterIndex, limit);
      afterIndex = page.lastIndex;
      return { messages: this.packed(page.messages, traceparent, dispatchSize ?? limit), done: page.messages.length < limit };
    };
    // A queue that already has enough to hand out does not read ahead: a large stage dispatched
    // chunk by chunk would otherwise hold a page per chunk.
    if (this.tasks.visibleWeight >= this.tasks.feeder.lowWaterMark || this.tasks.pendingSources > 0) {
      this.tasks.attachSource({ next });
      return;
    }
    const first = await next(pageSize);
    this.tasks.send(first.messages);
    if (!first.done) this.tasks.attachSource({ next });
  }

  scheduleTaskMessages(messages: readonly TaskQueueMessage[], at: Date): Promise<void> {
    this.tasks.send(this.packed(messages), at);
    return Promise.resolve();
  }

  reschedule(queue: string, message: RescheduledMessage, at: Date): Promise<void> {
    const target = [this.jobs, this.tasks, this.submissions].find((candidate) => candidate.name === queue);
    if (!target) return Promise.reject(new Error(`no in-process queue named ${queue}`));
    target.send([message], at);
    return Promise.resolve();
  }

  sendReceipt(queue: string, receipt: SubmissionReceipt, properties: { messageId: string; correlationId: string | null }): Promise<void> {
    this.replyQueue(queue).send([
      {
        messageId: properties.messageId,
        body: receipt,
        applicationProperties: properties.correlationId === null ? {} : { correlationId: properties.correlationId },
      },
    ]);
    return Promise.resolve();
  }

  /** The queue receipts for `name` go to (what a submitter would receive from). */
  replyQueue(name: string): InProcessQueue {
    let queue = this.replies.get(name);
    if (!queue) {
      queue = new InProcessQueue(name, this.queueOptions, this.operationCounts);
      this.replies.set(name, queue);
    }
    return queue;
  }

  operations(): OperationCounts {
    return this.operationCounts;
  }

  backlog(): number {
    return this.jobs.activeCount + this.tasks.activeCount;
  }

  close(): Promise<void> {
    this.jobs.close();
    this.tasks.close();
    this.submissions.close();
    for (const queue of this.replies.values()) queue.close();
    return Promise.resolve();
  }
}

function toQueueMessage(message: OutgoingTaskMessage, traceparent: { traceparent?: string }): QueueMessage {
  const first = message.tasks[0];
  const identity: Record<string, string | number> = message.tasks.length > 1 ? { packed: message.tasks.length } : { taskId: first.taskId };
  return {
    messageId: message.messageId,
    body: message.body,
    applicationProperties: { jobId: first.jobId, stage: first.stage, ...identity, ...traceparent },
  };
}
