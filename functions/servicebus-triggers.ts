import { app, type InvocationContext } from '@azure/functions';
import type { CoreMachine, MessageMeta } from '../core/engine/core-machine';
import { errorToShape, MalformedMessageError } from '../core/errors';
import { decideSettlement, RESCHEDULES_PROPERTY, rescheduledMessageId, reschedulesOf, type HandlingResult, type Settlement } from '../core/message-settlement';
import { SERVICE_BUS_CONNECTION_SETTING } from '../core/transport/service-bus-transport';
import { JOBS_QUEUE, SUBMISSIONS_QUEUE, TASKS_QUEUE, type Transport } from '../core/transport/transport';
import { getAppContext } from './app-context';

/** A discarded body is logged for the operator, but a log line is not the place for 256 KB. */
const MAX_LOGGED_BODY_CHARS = 8_192;

/** The trigger metadata of one message, as core's MessageMeta plus what settlement needs. */
interface TriggerMessage {
  meta: MessageMeta;
  reschedules: number;
  applicationProperties: Record<string, string | number | boolean>;
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
  return triggerMessage(context, index).meta;
}

function triggerMessage(context: InvocationContext, index?: number): TriggerMessage {
  const metadata = context.triggerMetadata ?? {};
  const pick = (single: string, array: string): unknown => {
    if (index === undefined) return metadata[single];
    const values = metadata[array];
    return Array.isArray(values) ? (values as unknown[])[index] : undefined;
  };
  const messageId = pick('messageId', 'messageIdArray');
  const deliveryCount = pick('deliveryCount', 'deliveryCountArray');
  // The W3C traceparent the sender stamped in the application properties: one trace per job.
  const rawProperties = pick('applicationProperties', 'applicationPropertiesArray');
  const applicationProperties: Record<string, string | number | boolean> = {};
  if (rawProperties && typeof rawProperties === 'object') {
    for (const [key, value] of Object.entries(rawProperties)) {
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') applicationProperties[key] = value;
    }
  }
  const traceparent = applicationProperties.traceparent;
  const enqueued = pick('enqueuedTimeUtc', 'enqueuedTimeUtcArray');
  const enqueuedTime = typeof enqueued === 'string' || enqueued instanceof Date ? new Date(enqueued) : undefined;
  const meta: MessageMeta = {
    messageId: typeof messageId === 'string' ? messageId : undefined,
    deliveryCount: typeof deliveryCount === 'number' ? deliveryCount : undefined,
    ...(typeof traceparent === 'string' ? { traceparent } : {}),
    ...(enqueuedTime && !Number.isNaN(enqueuedTime.getTime()) ? { enqueuedTime } : {}),
  };
  return { meta, reschedules: reschedulesOf(applicationProperties), applicationProperties };
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
async function reportDiscarded(
  context: InvocationContext,
  machine: CoreMachine | undefined,
  queue: string,
  meta: MessageMeta,
  error: unknown,
  body: unknown,
  settlement?: Extract<Settlement, { action: 'deadLetter' }>,
): Promise<void> {
  const shape = errorToShape(error);
  const engine = machine ?? (await getAppContext()).machine;
  await engine.processDeadLetter({ queue, messageId: meta.messageId, body, reason: settlement?.reason ?? shape.type, description: settlement?.description ?? shape.message });
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
async function contextOrRetry(context: InvocationContext, queue: string, meta: MessageMeta | MessageMeta[]): Promise<{ machine: CoreMachine; transport: Transport }> {
  try {
    return await getAppContext();
  } catch (error) {
    reportRetry(context, queue, meta, error);
    throw error;
  }
}

/**
 * Carries out core/settlement.ts's decision for one message. Complete: return (the host
 * auto-completes). Dead-letter: recorded through the engine and completed, since a Node trigger
 * cannot dead-letter with a reason. Reschedule: a copy is scheduled through the transport, then
 * the original completes. Abandon is the caller's: it throws, as only a throw abandons.
 */
async function carryOut(context: InvocationContext, machine: CoreMachine, transport: Transport, queue: string, message: TriggerMessage, body: unknown, settlement: Settlement, error?: unknown): Promise<void> {
  if (settlement.action === 'deadLetter') {
    await reportDiscarded(context, machine, queue, message.meta, error ?? new Error(settlement.description), body, settlement);
  } else if (settlement.action === 'reschedule') {
    if (!transport.reschedule) throw coerce(error ?? new Error(settlement.reason));
    const reschedules = message.reschedules + 1;
    const messageId = rescheduledMessageId(message.meta.messageId ?? 'message', reschedules);
    const at = new Date(Date.now() + settlement.delayMs);
    await transport.reschedule(queue, { messageId, body, applicationProperties: { ...message.applicationProperties, [RESCHEDULES_PROPERTY]: reschedules } }, at);
    const line = JSON.stringify({ event: settlement.deferred ? 'coremachine.message.deferred' : 'coremachine.message.rescheduled', queue, ...message.meta, copy: messageId, delayMs: settlement.delayMs, reason: settlement.reason });
    // A deferral is a concurrency or rate limit doing its job, not a fault worth a warning.
    if (settlement.deferred) context.debug(line);
    else context.warn(line);
  }
}

function coerce(error: unknown): Error {
  return error instanceof Error ? error : new Error(errorToShape(error).message);
}

/** A single-message trigger: handle, decide, carry out; abandon by rethrowing. */
async function settleOne(context: InvocationContext, machine: CoreMachine, transport: Transport, queue: string, message: TriggerMessage, body: unknown, result: HandlingResult): Promise<void> {
  const settlement = decideSettlement(result, message);
  const error = result.ok ? result.outcome?.error : result.error;
  if (settlement.action === 'abandon') {
    reportRetry(context, queue, message.meta, error);
    throw coerce(error);
  }
  await carryOut(context, machine, transport, queue, message, body, settlement, error);
}

async function handled<T>(work: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** coremachine-jobs, one message per invocation: starts the stage the message names. */
export async function jobMessageHandler(message: unknown, context: InvocationContext): Promise<void> {
  const item = triggerMessage(context);
  const decoded = decodeBody(message);
  if (!decoded.ok) {
    await reportDiscarded(context, undefined, JOBS_QUEUE, item.meta, decoded.error, message);
    return;
  }
  const { machine, transport } = await contextOrRetry(context, JOBS_QUEUE, item.meta);
  const run = await handled(() => machine.processJobMessage(decoded.body, item.meta));
  if (run.ok) context.log(JSON.stringify({ event: 'coremachine.message.processed', queue: JOBS_QUEUE, ...item.meta, ...run.value }));
  await settleOne(context, machine, transport, JOBS_QUEUE, item, decoded.body, run.ok ? { ok: true, outcome: run.value } : run);
}

/**
 * coremachine-tasks, a batch per invocation. Each message is settled as the policy says; the host
 * can only abandon a batch as a whole, so if any message must be abandoned the batch is (the
 * engine makes the redelivered copies of the others harmless).
 */
export async function taskMessagesHandler(messages: unknown, context: InvocationContext): Promise<void> {
  const batch: unknown[] = Array.isArray(messages) ? messages : [messages];
  const valid: Array<{ index: number; body: unknown; item: TriggerMessage }> = [];
  for (const [index, raw] of batch.entries()) {
    const decoded = decodeBody(raw);
    if (decoded.ok) valid.push({ index, body: decoded.body, item: triggerMessage(context, index) });
    else await reportDiscarded(context, undefined, TASKS_QUEUE, messageMeta(context, index), decoded.error, raw);
  }
  if (valid.length === 0) return;

  const metas = valid.map(({ item }) => item.meta);
  const { machine, transport } = await contextOrRetry(context, TASKS_QUEUE, metas);
  const run = await handled(() => machine.processTaskMessages(valid.map(({ body }) => body), metas));
  const results: HandlingResult[] = valid.map((_, i) => (run.ok ? { ok: true, outcome: run.value[i] } : run));
  const settlements = valid.map(({ item }, i) => decideSettlement(results[i] ?? { ok: false, error: new Error('no outcome') }, item));
  if (settlements.some((settlement) => settlement.action === 'abandon')) {
    const error = run.ok ? new Error('a message of the batch must be redelivered') : run.error;
    reportRetry(context, TASKS_QUEUE, metas, error);
    throw coerce(error);
  }
  const counts: Record<string, number> = {};
  for (const [i, { item, body }] of valid.entries()) {
    const result = results[i];
    const settlement = settlements[i];
    if (!result || !settlement) continue;
    const label = result.ok ? (result.outcome?.outcome ?? 'ok') : settlement.action;
    counts[label] = (counts[label] ?? 0) + 1;
    await carryOut(context, machine, transport, TASKS_QUEUE, item, body, settlement, result.ok ? result.outcome?.error : result.error);
  }
  context.log(JSON.stringify({ event: 'coremachine.batch.processed', queue: TASKS_QUEUE, size: batch.length, outcomes: counts }));
}

/**
 * coremachine-submissions: another system submits `{jobType, parameters}`; same id, validation and
 * idempotency as POST /api/jobs/{jobType}. `{jobId, signal, payload}` delivers a signal instead,
 * with the answers of POST /api/jobs/{jobId}/signals/{name}; one the job refuses (409 over HTTP) is
 * dead-lettered with its reason at once, never retried. An invalid submission stores no job: it is recorded in
 * dead_letters with the zod issues (GET /api/dead-letters) and logged, then completed, because a
 * Node trigger can only dead-letter with a reason through the preview SDK-binding extension.
 */
export async function submissionHandler(message: unknown, context: InvocationContext): Promise<void> {
  const item = triggerMessage(context);
  const decoded = decodeBody(message);
  if (!decoded.ok) {
    await reportDiscarded(context, undefined, SUBMISSIONS_QUEUE, item.meta, decoded.error, message);
    return;
  }
  const { machine, transport } = await contextOrRetry(context, SUBMISSIONS_QUEUE, item.meta);
  const run = await handled(() => machine.submitFromMessage(decoded.body));
  if (run.ok) {
    const { job, created, signal } = run.value;
    const event = signal ? 'coremachine.signal.accepted' : 'coremachine.submission.accepted';
    context.log(JSON.stringify({ event, ...item.meta, jobId: job.jobId, jobType: job.jobType, created, ...(signal ? { signal: signal.name, delivered: signal.delivered } : {}) }));
  }
  await settleOne(context, machine, transport, SUBMISSIONS_QUEUE, item, decoded.body, run.ok ? { ok: true } : run);
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
    const { machine } = await contextOrRetry(context, `${queue}/$deadletterqueue`, meta);
    const outcome = await machine.processDeadLetter({ queue, messageId: meta.messageId, body: decoded.ok ? decoded.body : message, reason, description });
    context.warn(JSON.stringify({ event: 'coremachine.dead_letter.processed', queue, ...meta, reason, description, outcome }));
  };
}

/** The Service Bus triggers; functions/index.ts registers them with the host. */
export function registerServiceBusTriggers(): void {
  app.serviceBusQueue('jobs-queue', { connection: SERVICE_BUS_CONNECTION_SETTING, queueName: JOBS_QUEUE, cardinality: 'one', handler: jobMessageHandler });
  app.serviceBusQueue('tasks-queue', { connection: SERVICE_BUS_CONNECTION_SETTING, queueName: TASKS_QUEUE, cardinality: 'many', handler: taskMessagesHandler });
  app.serviceBusQueue('submissions-queue', { connection: SERVICE_BUS_CONNECTION_SETTING, queueName: SUBMISSIONS_QUEUE, cardinality: 'one', handler: submissionHandler });
  app.serviceBusQueue('jobs-dead-letters', { connection: SERVICE_BUS_CONNECTION_SETTING, queueName: `${JOBS_QUEUE}/$deadletterqueue`, cardinality: 'one', handler: deadLetterHandler(JOBS_QUEUE) });
  app.serviceBusQueue('submissions-dead-letters', { connection: SERVICE_BUS_CONNECTION_SETTING, queueName: `${SUBMISSIONS_QUEUE}/$deadletterqueue`, cardinality: 'one', handler: deadLetterHandler(SUBMISSIONS_QUEUE) });
  app.serviceBusQueue('tasks-dead-letters', { connection: SERVICE_BUS_CONNECTION_SETTING, queueName: `${TASKS_QUEUE}/$deadletterqueue`, cardinality: 'one', handler: deadLetterHandler(TASKS_QUEUE) });
}
