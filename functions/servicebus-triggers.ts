import { app, type InvocationContext } from '@azure/functions';
import { errorToShape, MalformedMessageError } from '../core/errors';
import type { Logger, LogFields } from '../core/logger';
import type { HandlingResult } from '../core/message-settlement';
import { countInvocation } from '../core/transport/operation-counts';
import { SERVICE_BUS_CONNECTION_SETTING } from '../core/transport/service-bus-transport';
import { handling, handlingBatch, messageMetaOf, settleBatch, type HeldMessage, type MessageHost } from '../core/transport/settle-batch';
import { JOBS_QUEUE, SUBMISSIONS_QUEUE, TASKS_QUEUE } from '../core/transport/transport';
import { unpackTaskBatch } from '../core/transport/task-packing';
import { getAppContext, type AppContext } from './app-context';
import type { FunctionsApp } from './http-route';

/**
 * The host hands over JSON bodies already parsed, but a body sent as text or bytes arrives as a
 * string or Buffer. Text that is not JSON can never become valid, so it is malformed, not retryable.
 */
export function decodeBody(raw: unknown): { ok: true; body: unknown } | { ok: false; error: MalformedMessageError } {
  const text = raw instanceof Uint8Array ? Buffer.from(raw).toString('utf8') : raw;
  if (typeof text !== 'string') return { ok: true, body: text };
  try {
    return { ok: true, body: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, error: new MalformedMessageError(`message body is not JSON: ${errorToShape(error).message}`) };
  }
}

/** Message `index` of the trigger's batch (or the one message), as every host describes a message. */
export function heldMessageOf(context: InvocationContext, body: unknown, index?: number): HeldMessage {
  const metadata = context.triggerMetadata ?? {};
  const pick = (single: string, array: string): unknown => {
    if (index === undefined) return metadata[single];
    const values = metadata[array];
    return Array.isArray(values) ? (values as unknown[])[index] : undefined;
  };
  const messageId = pick('messageId', 'messageIdArray');
  const deliveryCount = pick('deliveryCount', 'deliveryCountArray');
  const rawProperties = pick('applicationProperties', 'applicationPropertiesArray');
  const applicationProperties: Record<string, string | number | boolean> = {};
  if (rawProperties && typeof rawProperties === 'object') {
    for (const [key, value] of Object.entries(rawProperties)) {
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') applicationProperties[key] = value;
    }
  }
  const enqueued = pick('enqueuedTimeUtc', 'enqueuedTimeUtcArray');
  const replyTo = pick('replyTo', 'replyToArray');
  const correlationId = pick('correlationId', 'correlationIdArray');
  return {
    ...(typeof replyTo === 'string' && replyTo !== '' ? { replyTo } : {}),
    ...(typeof correlationId === 'string' && correlationId !== '' ? { correlationId } : {}),
    messageId: typeof messageId === 'string' ? messageId : undefined,
    body,
    deliveryCount: typeof deliveryCount === 'number' ? deliveryCount : undefined,
    enqueuedTime: typeof enqueued === 'string' || enqueued instanceof Date ? new Date(enqueued) : undefined,
    applicationProperties,
  };
}

/** A Logger that writes one JSON line per event through the invocation, as the host records it. */
function invocationLogger(context: InvocationContext): Logger {
  const line = (message: string, fields: LogFields = {}) => JSON.stringify({ event: fields.event ?? message, message, ...fields });
  const logger: Logger = {
    debug: (message, fields) => context.debug(line(message, fields)),
    info: (message, fields) => context.log(line(message, fields)),
    warn: (message, fields) => context.warn(line(message, fields)),
    error: (message, fields) => context.error(line(message, fields)),
    child: () => logger,
  };
  return logger;
}

/**
 * The Service Bus side of settling a batch (core/transport/settle-batch.ts). Completion is the
 * host's own when the function returns (autoCompleteMessages); only a throw gives messages back,
 * and only the whole batch. A Node trigger cannot dead-letter with a reason, so a message no
 * redelivery can fix is recorded through the engine (GET /api/dead-letters; it fails what it
 * pointed at when it is the engine's own) and completed. A reschedule is a copy sent through
 * the transport, then the original completes.
 */
export function serviceBusHost(context: InvocationContext, queue: string, messages: readonly HeldMessage[], appContext?: AppContext): MessageHost {
  const logger = invocationLogger(context);
  // What the host does with the messages, counted on the transport (core/transport/operation-counts.ts).
  const operations = appContext?.transport.operations?.();
  return {
    queue,
    logger,
    complete: () => Promise.resolve(operations?.add('complete')),
    abandonAll: (error) => {
      operations?.add('abandon', messages.length);
      return Promise.reject(error instanceof Error ? error : new Error(errorToShape(error).message));
    },
    deadLetter: async (index, reason, description) => {
      const message = messages[index] as HeldMessage;
      const { machine } = appContext ?? (await getAppContext());
      await machine.processDeadLetter({ queue, messageId: message.messageId, body: message.body, reason, description });
      // Recorded, then completed by the host: a complete is what Service Bus sees.
      operations?.add('complete');
    },
    sendCopy: async (copy, at) => {
      const transport = (appContext ?? (await getAppContext())).transport;
      if (!transport.reschedule) throw new Error(`the ${transport.name} transport cannot reschedule a message`);
      await transport.reschedule(queue, copy, at);
    },
  };
}

/**
 * Failing to start the engine is always retryable here, even a SchemaVersionError: once the
 * database is migrated the same message succeeds, so the batch is given back (the throw).
 */
async function contextOrRetry(context: InvocationContext, queue: string, messages: readonly HeldMessage[]): Promise<AppContext> {
  try {
    return await getAppContext();
  } catch (error) {
    invocationLogger(context).error('the engine could not start; the messages go back to the queue', {
      event: 'coremachine.message.retry',
      queue,
      messages: messages.map((m) => m.messageId),
      error: errorToShape(error),
    });
    throw error;
  }
}

/**
 * Decodes each message; a body that is not JSON is settled as malformed (recorded, completed)
 * without the engine. Returns the messages the engine gets, with their index in the batch.
 */
async function decoded(context: InvocationContext, queue: string, raw: readonly unknown[], single: boolean): Promise<HeldMessage[]> {
  const held: HeldMessage[] = [];
  const malformed: Array<{ message: HeldMessage; result: HandlingResult }> = [];
  for (const [index, body] of raw.entries()) {
    const decodedBody = decodeBody(body);
    const message = heldMessageOf(context, decodedBody.ok ? decodedBody.body : body, single ? undefined : index);
    if (decodedBody.ok) held.push(message);
    else malformed.push({ message, result: { ok: false, error: decodedBody.error } });
  }
  if (malformed.length > 0) {
    await settleBatch(
      serviceBusHost(
        context,
        queue,
        malformed.map((m) => m.message),
      ),
      malformed.map((m) => m.message),
      malformed.map((m) => m.result),
    );
  }
  return held;
}

/** coremachine-jobs, one message per invocation: starts the stage the message names. */
export async function jobMessageHandler(message: unknown, context: InvocationContext): Promise<void> {
  const [held] = await decoded(context, JOBS_QUEUE, [message], true);
  if (!held) return;
  const appContext = await contextOrRetry(context, JOBS_QUEUE, [held]);
  countInvocation(appContext.transport.operations?.(), 1);
  const result = await handling(() => appContext.machine.processJobMessage(held.body, messageMetaOf(held)));
  if (result.ok) context.log(JSON.stringify({ event: 'coremachine.message.processed', queue: JOBS_QUEUE, ...messageMetaOf(held), ...result.outcome }));
  await settleBatch(serviceBusHost(context, JOBS_QUEUE, [held], appContext), [held], [result]);
}

/** coremachine-tasks, a batch per invocation: one engine call, then each message settled by the policy. */
export async function taskMessagesHandler(messages: unknown, context: InvocationContext): Promise<void> {
  const batch = await decoded(context, TASKS_QUEUE, Array.isArray(messages) ? messages : [messages], !Array.isArray(messages));
  if (batch.length === 0) return;
  const appContext = await contextOrRetry(context, TASKS_QUEUE, batch);
  countInvocation(appContext.transport.operations?.(), batch.length);
  // Each task of a pack is handled as a message of its own; a pack delivered before is split unhandled.
  const unpacked = unpackTaskBatch(batch);
  const results = await handlingBatch(unpacked.logical.length, async () => {
    if (unpacked.logical.length === 0) return [];
    const outcomes = await appContext.machine.processTaskMessages(
      unpacked.logical.map((held) => held.body),
      unpacked.logical.map(messageMetaOf),
    );
    return outcomes.map((outcome) => ({ ok: true, outcome }));
  });
  const counts = await settleBatch(serviceBusHost(context, TASKS_QUEUE, batch, appContext), unpacked, results);
  context.log(JSON.stringify({ event: 'coremachine.batch.processed', queue: TASKS_QUEUE, size: batch.length, outcomes: counts }));
}

/**
 * coremachine-submissions: another system submits `{jobType, parameters}`; same id, validation and
 * idempotency as POST /api/jobs/{jobType}. `{jobId, signal, payload}` delivers a signal instead,
 * with the answers of POST /api/jobs/{jobId}/signals/{name}; one the job refuses (409 over HTTP) is
 * dead-lettered with its reason at once, never retried. An invalid submission stores no job: it is
 * recorded in dead_letters with the zod issues (GET /api/dead-letters) and logged, then completed.
 */
export async function submissionHandler(message: unknown, context: InvocationContext): Promise<void> {
  const [held] = await decoded(context, SUBMISSIONS_QUEUE, [message], true);
  if (!held) return;
  const appContext = await contextOrRetry(context, SUBMISSIONS_QUEUE, [held]);
  countInvocation(appContext.transport.operations?.(), 1);
  const result = await handling(async () => {
    const { job, created, signal } = await appContext.machine.submitFromMessage(held.body, {
      messageId: held.messageId,
      replyTo: held.replyTo,
      correlationId: held.correlationId,
    });
    const event = signal ? 'coremachine.signal.accepted' : 'coremachine.submission.accepted';
    context.log(
      JSON.stringify({
        event,
        ...messageMetaOf(held),
        jobId: job.jobId,
        jobType: job.jobType,
        created,
        ...(signal ? { signal: signal.name, delivered: signal.delivered } : {}),
      }),
    );
    return undefined;
  });
  await settleBatch(serviceBusHost(context, SUBMISSIONS_QUEUE, [held], appContext), [held], [result]);
}

/**
 * The dead-letter sub-queues: a message Service Bus gave up on (max delivery count, expiry) must not
 * leave its job PROCESSING. The engine records it and, when it is the engine's own message on the
 * engine's own queue, fails the task or job it pointed at.
 */
export function deadLetterHandler(queue: string) {
  return async (message: unknown, context: InvocationContext): Promise<void> => {
    const decodedBody = decodeBody(message);
    const held = heldMessageOf(context, decodedBody.ok ? decodedBody.body : message);
    const metadata = context.triggerMetadata ?? {};
    const reason = typeof metadata.deadLetterReason === 'string' ? metadata.deadLetterReason : 'DeadLettered';
    const description = typeof metadata.deadLetterErrorDescription === 'string' ? metadata.deadLetterErrorDescription : 'no description';
    const { machine, transport } = await contextOrRetry(context, `${queue}/$deadletterqueue`, [held]);
    countInvocation(transport.operations?.(), 1);
    const outcome = await machine.processDeadLetter({ queue, messageId: held.messageId, body: held.body, reason, description });
    transport.operations?.().add('complete');
    context.warn(
      JSON.stringify({
        event: 'coremachine.dead_letter.processed',
        queue,
        messageId: held.messageId,
        deliveryCount: held.deliveryCount,
        reason,
        description,
        outcome,
      }),
    );
  };
}

/** The Service Bus triggers; functions/index.ts registers them with the host. */
export function registerServiceBusTriggers(target: FunctionsApp = app): void {
  target.serviceBusQueue('jobs-queue', { connection: SERVICE_BUS_CONNECTION_SETTING, queueName: JOBS_QUEUE, cardinality: 'one', handler: jobMessageHandler });
  target.serviceBusQueue('tasks-queue', {
    connection: SERVICE_BUS_CONNECTION_SETTING,
    queueName: TASKS_QUEUE,
    cardinality: 'many',
    handler: taskMessagesHandler,
  });
  target.serviceBusQueue('submissions-queue', {
    connection: SERVICE_BUS_CONNECTION_SETTING,
    queueName: SUBMISSIONS_QUEUE,
    cardinality: 'one',
    handler: submissionHandler,
  });
  target.serviceBusQueue('jobs-dead-letters', {
    connection: SERVICE_BUS_CONNECTION_SETTING,
    queueName: `${JOBS_QUEUE}/$deadletterqueue`,
    cardinality: 'one',
    handler: deadLetterHandler(JOBS_QUEUE),
  });
  target.serviceBusQueue('submissions-dead-letters', {
    connection: SERVICE_BUS_CONNECTION_SETTING,
    queueName: `${SUBMISSIONS_QUEUE}/$deadletterqueue`,
    cardinality: 'one',
    handler: deadLetterHandler(SUBMISSIONS_QUEUE),
  });
  target.serviceBusQueue('tasks-dead-letters', {
    connection: SERVICE_BUS_CONNECTION_SETTING,
    queueName: `${TASKS_QUEUE}/$deadletterqueue`,
    cardinality: 'one',
    handler: deadLetterHandler(TASKS_QUEUE),
  });
}
