import type { JobQueueMessage, TaskQueueMessage } from '../../models';

export const JOBS_QUEUE = 'coremachine-jobs';
export const TASKS_QUEUE = 'coremachine-tasks';

/** What the engine needs from a message bus. Implementations: in-process (dev, tests), Service Bus. */
export interface Transport {
  readonly name: string;
  sendJobMessages(messages: readonly JobQueueMessage[]): Promise<void>;
  sendTaskMessages(messages: readonly TaskQueueMessage[]): Promise<void>;
  /** Send later: the message becomes visible at `at` (Service Bus scheduled messages). */
  scheduleTaskMessages(messages: readonly TaskQueueMessage[], at: Date): Promise<void>;
  close(): Promise<void>;
}
