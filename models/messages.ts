import { z } from 'zod';
import { IdempotencyKey } from './idempotency';
import { INT4_MAX, integerInput, JobId, MAX_NAME_LENGTH, safeText, TaskId } from './http-input';
import { SIGNAL_NAME } from './job-definition';
import { CreatedBy, JobLabels, JobName } from './job-labels';
import { FairnessKey, FairnessWeight, Priority } from './job-priority';

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

/** The most task messages one Service Bus message carries (core/transport/task-packing.ts). */
export const MAX_PACKED_TASKS = 64;
/**
 * The default largest pack. 16 brings a pack's three operations under 0.2 per task while a batch
 * of a few packs still spreads over the consumers of a stage of a few thousand tasks.
 */
export const DEFAULT_MAX_PACKED_TASKS = 16;

/**
 * Several task messages of one stage and task type in one queue message: a fan-out of many short
 * tasks costs a send, a receive and a complete per pack instead of per task. Each task is still
 * claimed, fenced, settled and retried on its own; a pack that comes back (its host died) is split
 * into single messages, so a poison task ends in the dead-letter queue alone.
 */
export const PackedTaskMessage = z.strictObject({
  packed: z.array(TaskQueueMessage).min(2).max(MAX_PACKED_TASKS),
});
export type PackedTaskMessage = z.infer<typeof PackedTaskMessage>;

/**
 * Task messages this process took out of a pack it parsed: every one was checked against
 * TaskQueueMessage then, and zod handed back new objects nobody else holds. The engine's parse of
 * the unpacked messages takes them as they are instead of checking each a second time (that second
 * parse was a sixth of the bytes a task allocated).
 */
const tasksOfParsedPacks = new WeakSet<object>();

/** Parses a pack of task messages (PackedTaskMessage); its tasks are then known to be well formed. */
export function parsePackedTaskMessage(body: unknown): z.ZodSafeParseResult<PackedTaskMessage> {
  const result = PackedTaskMessage.safeParse(body);
  if (result.success) for (const task of result.data.packed) tasksOfParsedPacks.add(task);
  return result;
}

/** Parses one task message (TaskQueueMessage), unless it came out of a pack parsed here. */
export function parseTaskQueueMessage(body: unknown): z.ZodSafeParseResult<TaskQueueMessage> {
  if (typeof body === 'object' && body !== null && tasksOfParsedPacks.has(body)) return { success: true, data: body as TaskQueueMessage };
  return TaskQueueMessage.safeParse(body);
}

/** Deterministic ids so Service Bus duplicate detection drops a re-send of the same message. */
export function jobMessageId(message: JobQueueMessage): string {
  return `${message.jobId}:s${message.stage}${message.resend ? `:r${message.resend}` : ''}`;
}

export function taskMessageId(message: TaskQueueMessage): string {
  return `${message.taskId}:a${message.attempt}${message.resend ? `:r${message.resend}` : ''}`;
}

/**
 * A queue a receipt may go to: a Service Bus entity name (letters, digits, '.', '-', '_', '/', at
 * most 260 characters), never one of the engine's own queues (a receipt there would be an engine
 * message from a stranger).
 */
export const JOBS_QUEUE = 'coremachine-jobs';
export const TASKS_QUEUE = 'coremachine-tasks';
/** Other systems submit jobs here with `{jobType, parameters}` (JobSubmissionMessage). */
export const SUBMISSIONS_QUEUE = 'coremachine-submissions';
/** Job events out (models/job-event.ts): a topic, so any number of systems can subscribe. */
export const EVENTS_TOPIC = 'coremachine-events';
export const ENGINE_ENTITIES: readonly string[] = [JOBS_QUEUE, TASKS_QUEUE, SUBMISSIONS_QUEUE, EVENTS_TOPIC];
export const ReplyToQueue = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._\-/]{0,259}$/, 'replyTo must be a Service Bus queue name')
  .refine(
    (name) => !ENGINE_ENTITIES.some((entity) => name.toLowerCase() === entity || name.toLowerCase().startsWith(`${entity}/`)),
    "replyTo must not be one of the engine's own queues",
  );
const CorrelationId = safeText(128);

/** The HTTP header that names the version of the job type a submission runs. */
export const JOB_VERSION_HEADER = 'CoreMachine-Job-Version';

/** A job type's version as a submitter names it: the HTTP header's text or a number. */
export const JobVersionInput = integerInput(1, INT4_MAX);

/** A job submitted by message instead of HTTP: same validation, id and idempotency as the HTTP route. */
export const JobSubmissionMessage = z.strictObject({
  jobType: z.string().min(1),
  parameters: z.unknown(),
  /** Same meaning as the HTTP Idempotency-Key header: another key runs the same parameters again. */
  idempotencyKey: IdempotencyKey.optional(),
  /** Same meaning as the HTTP CoreMachine-Timeout-Seconds header (models/deadline.ts). */
  timeoutSeconds: z.number().int().optional(),
  /**
   * Where the receipt goes and what it carries back, for producers that cannot set the message's
   * own Service Bus properties; the message's `replyTo` and `correlationId` come first.
   */
  replyTo: ReplyToQueue.optional(),
  correlationId: CorrelationId.optional(),
  /** The version of the job type to run; the newest registered when absent. */
  version: JobVersionInput.optional(),
  /** Who and what (models/job-labels.ts), as the HTTP CoreMachine-Job-Name, -Created-By and -Labels headers give them. */
  name: JobName.optional(),
  createdBy: CreatedBy.optional(),
  labels: JobLabels.optional(),
  /** Priority and fair share (models/job-priority.ts), as the CoreMachine-Priority and -Fairness-* headers give them. */
  priority: Priority.optional(),
  fairnessKey: FairnessKey.optional(),
  fairnessWeight: FairnessWeight.optional(),
});
export type JobSubmissionMessage = z.infer<typeof JobSubmissionMessage>;

/**
 * What a submitter that named a `replyTo` queue gets back for each submission (or signal) message:
 * accepted with the job (and whether it was new), or refused with the reasons. Its Service Bus
 * correlationId is the submission's correlationId, else its messageId.
 */
export const SubmissionReceipt = z.discriminatedUnion('status', [
  z.strictObject({
    status: z.literal('accepted'),
    correlationId: z.string().nullable(),
    jobId: JobId,
    jobType: z.string(),
    /** false: the same submission (type, parameters, idempotency key) was accepted before. */
    created: z.boolean(),
    /** For a signal message: whether this delivery changed anything (false for a repeat). */
    signal: z.strictObject({ name: z.string(), delivered: z.boolean() }).optional(),
  }),
  z.strictObject({
    status: z.literal('refused'),
    correlationId: z.string().nullable(),
    error: z.strictObject({ type: z.string(), message: z.string(), issues: z.array(z.unknown()).optional() }),
  }),
]);
export type SubmissionReceipt = z.infer<typeof SubmissionReceipt>;

/**
 * A signal delivered by message on the submissions queue instead of HTTP: same validation and
 * answers as POST jobs/{jobId}/signals/{name}. Told apart from a job submission by its `signal` key.
 */
export const SignalMessage = z.strictObject({
  jobId: JobId,
  signal: z.string().regex(SIGNAL_NAME, `a signal name matches ${String(SIGNAL_NAME)}`),
  payload: z.unknown(),
  replyTo: ReplyToQueue.optional(),
  correlationId: CorrelationId.optional(),
});
export type SignalMessage = z.infer<typeof SignalMessage>;

/** True for a submissions-queue body that means to be a signal (it may still be malformed). */
export function isSignalMessageBody(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && 'signal' in body;
}
