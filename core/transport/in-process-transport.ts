import { jobMessageId, taskMessageId, type JobEvent, type JobQueueMessage, type TaskQueueMessage } from '../../models';
import { JobEventBus } from './job-event-bus';
import { InProcessQueue, type QueueOptions } from './in-process-queue';
import { traceProperties } from '../telemetry';
import { JOBS_QUEUE, SUBMISSIONS_QUEUE, TASKS_QUEUE, type RescheduledMessage, type Transport } from './transport';

const DEFAULT_QUEUE_OPTIONS: QueueOptions = {
  // Matches the Bicep queues: 5 minute lock (renewed by the consumer), 10 deliveries.
  lockDurationMs: 5 * 60_000,
  maxDeliveryCount: 10,
  duplicateDetectionWindowMs: 0,
};

/** The jobs and tasks queues in memory, for `coremachine dev`, the demo and the tests. */
export class InProcessTransport implements Transport {
  readonly name = 'in-process';
  readonly jobs: InProcessQueue;
  readonly tasks: InProcessQueue;
  /** Job submissions by message from other systems (`{jobType, parameters}`). */
  readonly submissions: InProcessQueue;
  /** Job events out: what the events topic's subscriptions are in Azure (`machine.events.subscribe`). */
  readonly events = new JobEventBus();

  constructor(options: Partial<QueueOptions> = {}) {
    const queueOptions = { ...DEFAULT_QUEUE_OPTIONS, ...options };
    this.jobs = new InProcessQueue(JOBS_QUEUE, queueOptions);
    this.tasks = new InProcessQueue(TASKS_QUEUE, queueOptions);
    this.submissions = new InProcessQueue(SUBMISSIONS_QUEUE, queueOptions);
  }

  sendJobMessages(messages: readonly JobQueueMessage[]): Promise<void> {
    const traceparent = traceProperties();
    this.jobs.send(messages.map((body) => ({ messageId: jobMessageId(body), body, applicationProperties: { jobId: body.jobId, stage: body.stage, ...traceparent } })));
    return Promise.resolve();
  }

  sendTaskMessages(messages: readonly TaskQueueMessage[]): Promise<void> {
    this.tasks.send(messages.map(toQueueMessage));
    return Promise.resolve();
  }

  publishEvents(events: readonly JobEvent[]): Promise<void> {
    return this.events.publish(events);
  }

  scheduleTaskMessages(messages: readonly TaskQueueMessage[], at: Date): Promise<void> {
    this.tasks.send(messages.map(toQueueMessage), at);
    return Promise.resolve();
  }

  reschedule(queue: string, message: RescheduledMessage, at: Date): Promise<void> {
    const target = [this.jobs, this.tasks, this.submissions].find((candidate) => candidate.name === queue);
    if (!target) return Promise.reject(new Error(`no in-process queue named ${queue}`));
    target.send([message], at);
    return Promise.resolve();
  }

  backlog(): number {
    return this.jobs.activeCount + this.tasks.activeCount;
  }

  close(): Promise<void> {
    this.jobs.close();
    this.tasks.close();
    this.submissions.close();
    return Promise.resolve();
  }
}

function toQueueMessage(body: TaskQueueMessage) {
  return {
    messageId: taskMessageId(body),
    body,
    applicationProperties: { jobId: body.jobId, stage: body.stage, taskId: body.taskId, ...traceProperties() },
  };
}
