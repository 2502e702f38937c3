import { app, type InvocationContext } from '@azure/functions';
import type { CoreMachine } from '../core/engine/core-machine';
import type { TaskMessageOutcome } from '../core/engine/task-batch';
import { errorToShape, isNonRetryable, MalformedMessageError } from '../core/errors';
import { JOBS_QUEUE, SUBMISSIONS_QUEUE, TASKS_QUEUE } from '../core/transport/transport';
import { getAppContext } from './app-context';

/** The app setting holding the Service Bus connection (string or identity-based prefix). */
export const SERVICE_BUS_CONNECTION = 'ServiceBusConnection';
/** A discarded body is logged for the operator, but a log line is not the place for 256 KB. */
const MAX_LOGGED_BODY_CHARS = 8_192;

interface MessageMeta {
  messageId: string | undefined;
  deliveryCount: number | undefined;
  traceparent?: string | undefined;
  enqueuedTime?: Date | undefined;
}

type Decoded = { ok: true; body: unknown } | { ok: false; error: MalformedMessageError };

/**
 * The host hands over JSON bodies already parsed, but a body sent as text or bytes arrives as a
 * string or Buffer. Text that is not JSON can never become valid, so it is malformed, not retryable.
 */
export function decodeBody(raw: unknown): Decoded {
  const text = raw instanceof Uint8Array ? Buffer.from(raw).toString('utf8') : raw;
  if (typeof text !== 'string') return { ok: true, body: text };
  try {
    return { ok: true, body: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, error: new MalformedMessageError(`message body is not JSON: ${errorToShape(error).message}`) };
  }
}

/** messageId / deliveryCount of the message (or of message `index` in a batch), when the host sent them. */
export function messageMeta(context: InvocationContext, index?: number): MessageMeta {
  const metadata = context.triggerMetadata ?? {};
  const pick = (single: string, array: string): unknown => {
    if (index === undefined) return metadata[single];
    const values = metadata[array];
    return Array.isArray(values) ? (values as unknown[])[index] : undefined;
  };
  const messageId = pick('messageId', 'messageIdArray');
  const deliveryCount = pick('deliveryCount', 'deliveryCountArray');
  // The W3C traceparent the sender stamped in the application properties: one trace per job.
  const properties = pick('applicationProperties', 'applicationPropertiesArray');
  const traceparent = properties && typeof properties === 'object' ? (properties as Record<string, unknown>).traceparent : undefined;
  const enqueued = pick('enqueuedTimeUtc', 'enqueuedTimeUtcArray');
  const enqueuedTime = typeof enqueued === 'string' || enqueued instanceof Date ? new Date(enqueued) : undefined;
  return {
    messageId: typeof messageId === 'string' ? messageId : undefined,
    deliveryCount: typeof deliveryCount === 'number' ? deliveryCount : undefined,
    ...(typeof traceparent === 'string' ? { traceparent } : {}),
    ...(enqueuedTime && !Number.isNaN(enqueuedTime.getTime()) ? { enqueuedTime } : {}),
  };
}

function describeBody(body: unknown): string {
  let text: string;
  try {
    text = typeof body === 'string' ? body : (JSON.stringify(body) ?? String(body));
  } catch {
    text = String(body);
  }
  return text.length > MAX_LOGGED_BODY_CHARS ? `${text.slice(0, MAX_LOGGED_BODY_CHARS)}…(truncated)` : text;
}

/**
 * A message that redelivery cannot fix is completed rather than retried ten times. It is recorded
 * in the dead_letters table (GET /api/dead-letters) through the engine, which also fails the task
 * or job it pointed at, and logged as one structured line with messageId, reason and body.
 */
async function reportDiscarded(context: InvocationContext, machine: CoreMachine | undefined, queue: string, meta: MessageMeta, error: unknown, body: unknown): Promise<void> {
  const shape = errorToShape(error);
  const engine = machine ?? (await getAppContext()).machine;
  await engine.processDeadLetter({ queue, messageId: meta.messageId, body, reason: shape.type, description: shape.message });
  context.error(
    JSON.stringify({
      event: 'coremachine.message.discarded',
      message: `discarded ${queue} message ${meta.messageId ?? '(no messageId)'}: ${shape.message}`,
      queue,
      ...meta,
      reason: shape.message,
      errorType: shape.type,
      error: shape,
      body: describeBody(body),
    }),
  );
}

/** Thrown back to the host so it abandons the message(s) and Service Bus redelivers them. */
function reportRetry(context: InvocationContext, queue: string, meta: MessageMeta | MessageMeta[], error: unknown): void {
  context.error(JSON.stringify({ event: 'coremachine.message.retry', queue, messages: meta, error: errorToShape(error) }));
}

/**
 * Failing to start the engine is always retryable here, even a SchemaVersionError: once the
 * database is migrated the same message succeeds, so it must not be discarded.
 */
async function machineOrRetry(context: InvocationContext, queue: string, meta: MessageMeta | MessageMeta[]): Promise<CoreMachine> {
  try {
    return (await getAppContext()).machine;
  } catch (error) {
    reportRetry(context, queue, meta, error);
    throw error;
  }
}

/** coremachine-jobs, one message per invocation: starts the stage the message names. */
export async function jobMessageHandler(message: unknown, context: InvocationContext): Promise<void> {
  const meta = messageMeta(context);
  const decoded = decodeBody(message);
  if (!decoded.ok) {
    await reportDiscarded(context, undefined, JOBS_QUEUE, meta, decoded.error, message);
    return;
  }
  const machine = await machineOrRetry(context, JOBS_QUEUE, meta);
  try {
    const outcome = await machine.processJobMessage(decoded.body, meta);
    context.log(JSON.stringify({ event: 'coremachine.message.processed', queue: JOBS_QUEUE, ...meta, ...outcome }));
  } catch (error) {
    if (isNonRetryable(error)) {
      await reportDiscarded(context, machine, JOBS_QUEUE, meta, error, decoded.body);
      return;
    }
    reportRetry(context, JOBS_QUEUE, meta, error);
    throw error;
  }
}

/**
 * coremachine-tasks, a batch per invocation. Malformed messages are discarded one by one; any
 * thrown error abandons the whole batch, and the engine makes the redelivered copies harmless.
 */
export async function taskMessagesHandler(messages: unknown, context: InvocationContext): Promise<void> {
  const batch: unknown[] = Array.isArray(messages) ? messages : [messages];
  const valid: Array<{ index: number; body: unknown }> = [];
  for (const [index, raw] of batch.entries()) {
    const decoded = decodeBody(raw);
    if (decoded.ok) valid.push({ index, body: decoded.body });
    else await reportDiscarded(context, undefined, TASKS_QUEUE, messageMeta(context, index), decoded.error, raw);
  }
  if (valid.length === 0) return;

  const metas = valid.map(({ index }) => messageMeta(context, index));
  const machine = await machineOrRetry(context, TASKS_QUEUE, metas);
  let outcomes: TaskMessageOutcome[];
  try {
    outcomes = await machine.processTaskMessages(valid.map(({ body }) => body), metas);
  } catch (error) {
    reportRetry(context, TASKS_QUEUE, metas, error);
    throw error;
  }
  const counts: Record<string, number> = {};
  for (const [i, outcome] of outcomes.entries()) {
    counts[outcome.outcome] = (counts[outcome.outcome] ?? 0) + 1;
    const item = valid[i];
    if (outcome.outcome === 'malformed' && item) await reportDiscarded(context, machine, TASKS_QUEUE, messageMeta(context, item.index), outcome.error, item.body);
  }
  context.log(JSON.stringify({ event: 'coremachine.batch.processed', queue: TASKS_QUEUE, size: batch.length, outcomes: counts }));
}

/**
 * coremachine-submissions: another system submits `{jobType, parameters}`; same id, validation and
 * idempotency as POST /api/jobs/{jobType}. An invalid submission stores no job: it is recorded in
 * dead_letters with the zod issues (GET /api/dead-letters) and logged, then completed, because a
 * Node trigger can only dead-letter with a reason through the preview SDK-binding extension.
 */
export async function submissionHandler(message: unknown, context: InvocationContext): Promise<void> {
  const meta = messageMeta(context);
  const decoded = decodeBody(message);
  if (!decoded.ok) {
    await reportDiscarded(context, undefined, SUBMISSIONS_QUEUE, meta, decoded.error, message);
    return;
  }
  const machine = await machineOrRetry(context, SUBMISSIONS_QUEUE, meta);
  try {
    const { job, created } = await machine.submitFromMessage(decoded.body);
    context.log(JSON.stringify({ event: 'coremachine.submission.accepted', ...meta, jobId: job.jobId, jobType: job.jobType, created }));
  } catch (error) {
    if (isNonRetryable(error)) {
      await reportDiscarded(context, machine, SUBMISSIONS_QUEUE, meta, error, decoded.body);
      return;
    }
    reportRetry(context, SUBMISSIONS_QUEUE, meta, error);
    throw error;
  }
}

/**
 * The dead-letter sub-queues: a message Service Bus gave up on (max delivery count, expiry) must not
 * leave its job PROCESSING. The engine records it and fails the task or job it pointed at.
 */
export function deadLetterHandler(queue: string) {
  return async (message: unknown, context: InvocationContext): Promise<void> => {
    const meta = messageMeta(context);
    const decoded = decodeBody(message);
    const metadata = context.triggerMetadata ?? {};
    const reason = typeof metadata.deadLetterReason === 'string' ? metadata.deadLetterReason : 'DeadLettered';
    const description = typeof metadata.deadLetterErrorDescription === 'string' ? metadata.deadLetterErrorDescription : 'no description';
    const machine = await machineOrRetry(context, `${queue}/$deadletterqueue`, meta);
    const outcome = await machine.processDeadLetter({ queue, messageId: meta.messageId, body: decoded.ok ? decoded.body : message, reason, description });
    context.warn(JSON.stringify({ event: 'coremachine.dead_letter.processed', queue, ...meta, reason, description, outcome }));
  };
}

/** The Service Bus triggers; functions/index.ts registers them with the host. */
export function registerServiceBusTriggers(): void {
  app.serviceBusQueue('jobs-queue', { connection: SERVICE_BUS_CONNECTION, queueName: JOBS_QUEUE, cardinality: 'one', handler: jobMessageHandler });
  app.serviceBusQueue('tasks-queue', { connection: SERVICE_BUS_CONNECTION, queueName: TASKS_QUEUE, cardinality: 'many', handler: taskMessagesHandler });
  app.serviceBusQueue('submissions-queue', { connection: SERVICE_BUS_CONNECTION, queueName: SUBMISSIONS_QUEUE, cardinality: 'one', handler: submissionHandler });
  app.serviceBusQueue('jobs-dead-letters', { connection: SERVICE_BUS_CONNECTION, queueName: `${JOBS_QUEUE}/$deadletterqueue`, cardinality: 'one', handler: deadLetterHandler(JOBS_QUEUE) });
  app.serviceBusQueue('submissions-dead-letters', { connection: SERVICE_BUS_CONNECTION, queueName: `${SUBMISSIONS_QUEUE}/$deadletterqueue`, cardinality: 'one', handler: deadLetterHandler(SUBMISSIONS_QUEUE) });
  app.serviceBusQueue('tasks-dead-letters', { connection: SERVICE_BUS_CONNECTION, queueName: `${TASKS_QUEUE}/$deadletterqueue`, cardinality: 'one', handler: deadLetterHandler(TASKS_QUEUE) });
}
