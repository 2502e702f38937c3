import { z } from 'zod';
import { ErrorShape } from './error-shape';

/**
 * What CoreMachine tells other systems when work ends: every terminal
 * job transition and every completed stage. Written to the outbox in the transaction that made
 * the transition, so an event is never lost and never sent for a change that rolled back;
 * published to the `coremachine-events` topic (Azure) or to in-process subscribers.
 */
export const JOB_EVENT_TYPES = ['JobCompleted', 'JobCompletedWithErrors', 'JobFailed', 'JobCancelled', 'StageCompleted'] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

/** Results bigger than this travel as `resultBytes` only: the event stays far below 256 KB. */
export const MAX_EVENT_RESULT_BYTES = 32 * 1024;

export const JobEvent = z.object({
  type: z.enum(JOB_EVENT_TYPES),
  jobId: z.string(),
  jobType: z.string(),
  /** The job's status after the transition (a stage completion leaves the job PROCESSING or QUEUED). */
  status: z.string(),
  stage: z.number().int(),
  stageName: z.string().optional(),
  /** ISO time the transition committed (the outbox row's transaction time). */
  at: z.string(),
  /** The job's result when it is at most MAX_EVENT_RESULT_BYTES of JSON. */
  result: z.unknown().optional(),
  /** Size of the result's JSON; read the job for a result too big to carry. */
  resultBytes: z.number().int().optional(),
  error: ErrorShape.optional(),
  /** The job's name, creator and labels (models/job-labels.ts), each only when it has them: bounded, so the event stays small. */
  name: z.string().optional(),
  createdBy: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
});
export type JobEvent = z.infer<typeof JobEvent>;

/** Deterministic per event, so a re-published event is dropped by duplicate detection or by the subscriber. */
export function jobEventMessageId(event: Pick<JobEvent, 'jobId' | 'type' | 'stage' | 'at'>): string {
  return `${event.jobId}:${event.type}:s${event.stage}:${Date.parse(event.at)}`;
}

/** The event type a job transition to `status` publishes, if any. */
export function jobEventTypeFor(status: string): JobEventType | undefined {
  switch (status) {
    case 'COMPLETED':
      return 'JobCompleted';
    case 'COMPLETED_WITH_ERRORS':
      return 'JobCompletedWithErrors';
    case 'FAILED':
      return 'JobFailed';
    case 'CANCELLED':
      return 'JobCancelled';
    default:
      return undefined;
  }
}

/** The result as an event carries it: inline when small, else only its size. */
export function eventResult(result: unknown): Pick<JobEvent, 'result' | 'resultBytes'> {
  if (result === undefined || result === null) return {};
  const bytes = new TextEncoder().encode(JSON.stringify(result)).length;
  return bytes <= MAX_EVENT_RESULT_BYTES ? { result, resultBytes: bytes } : { resultBytes: bytes };
}
