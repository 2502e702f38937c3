import { z } from 'zod';
import { IdempotencyKey } from './idempotency';
import { INT4_MAX, JobId, MAX_NAME_LENGTH, safeText, TaskId } from './http-input';
import { SIGNAL_NAME } from './job-definition';

/**
 * Queue messages are pointers into Postgres: small enough that no payload nears the 256 KB limit.
 * Every field is checked against what its column can hold (id formats, no NUL, int4 bounds) before
 * any SQL runs: a message PostgreSQL would refuse is malformed, dead-lettered on its own, and never
 * a driver error that fails the whole batch it arrived in.
 */
const QueueName = safeText(MAX_NAME_LENGTH);
const Stage = z.number().int().min(1).max(INT4_MAX);
/** Set on deliberate re-sends (resume, retry, janitor) so duplicate detection does not drop them. */
const Resend = safeText(MAX_NAME_LENGTH).optional();

export const JobQueueMessage = z.strictObject({
  jobId: JobId,
  jobType: QueueName,
  stage: Stage,
  resend: Resend,
});
export type JobQueueMessage = z.infer<typeof JobQueueMessage>;

export const TaskQueueMessage = z.strictObject({
  taskId: TaskId,
  jobId: JobId,
  stage: Stage,
  taskType: QueueName,
  attempt: z.number().int().min(1).max(INT4_MAX),
  resend: Resend,
});
export type TaskQueueMessage = z.infer<typeof TaskQueueMessage>;

/** Deterministic ids so Service Bus duplicate detection drops a re-send of the same message. */
export function jobMessageId(message: JobQueueMessage): string {
  return `${message.jobId}:s${message.stage}${message.resend ? `:r${message.resend}` : ''}`;
}

export function taskMessageId(message: TaskQueueMessage): string {
  return `${message.taskId}:a${message.attempt}${message.resend ? `:r${message.resend}` : ''}`;
}

/** A job submitted by message instead of HTTP: same validation, id and idempotency as the HTTP route. */
export const JobSubmissionMessage = z.strictObject({
  jobType: z.string().min(1),
  parameters: z.unknown(),
  /** Same meaning as the HTTP Idempotency-Key header: another key runs the same parameters again. */
  idempotencyKey: IdempotencyKey.optional(),
  /** Same meaning as the HTTP CoreMachine-Timeout-Seconds header (models/deadline.ts). */
  timeoutSeconds: z.number().int().optional(),
});
export type JobSubmissionMessage = z.infer<typeof JobSubmissionMessage>;

/**
 * A signal delivered by message on the submissions queue instead of HTTP: same validation and
 * answers as POST jobs/{jobId}/signals/{name}. Told apart from a job submission by its `signal` key.
 */
export const SignalMessage = z.strictObject({
  jobId: JobId,
  signal: z.string().regex(SIGNAL_NAME, `a signal name matches ${String(SIGNAL_NAME)}`),
  payload: z.unknown(),
});
export type SignalMessage = z.infer<typeof SignalMessage>;

/** True for a submissions-queue body that means to be a signal (it may still be malformed). */
export function isSignalMessageBody(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && 'signal' in body;
}
