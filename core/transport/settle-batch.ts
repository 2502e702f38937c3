import type { Logger } from '../logger';
import {
  decideSettlement,
  RESCHEDULES_PROPERTY,
  rescheduledMessageId,
  reschedulesOf,
  type HandlingResult,
  type Settlement,
  type SettlementPolicy,
} from '../message-settlement';
import type { RescheduledMessage } from './transport';

/** A received message as any host knows it: what the engine and the settlement need. */
export interface HeldMessage {
  messageId: string | undefined;
  body: unknown;
  deliveryCount: number | undefined;
  enqueuedTime: Date | undefined;
  applicationProperties: Record<string, string | number | boolean>;
  /** Service Bus broker properties a submitter may set: where its receipt goes, and what ties it back. */
  replyTo?: string | undefined;
  correlationId?: string | undefined;
}

/** What the engine is told about a message besides its body. */
export interface MessageMeta {
  messageId?: string | undefined;
  deliveryCount?: number | undefined;
  /** W3C trace context from the message's application properties. */
  traceparent?: string | undefined;
  enqueuedTime?: Date | undefined;
}

export function messageMetaOf(message: HeldMessage): MessageMeta {
  const meta: MessageMeta = {};
  if (message.messageId !== undefined) meta.messageId = message.messageId;
  if (message.deliveryCount !== undefined) meta.deliveryCount = message.deliveryCount;
  // The W3C traceparent the sender stamped in the application properties: one trace per job.
  const traceparent = message.applicationProperties.traceparent;
  if (typeof traceparent === 'string') meta.traceparent = traceparent;
  if (message.enqueuedTime && !Number.isNaN(message.enqueuedTime.getTime())) meta.enqueuedTime = message.enqueuedTime;
  return meta;
}

/**
 * What a host can do with a batch it received: the in-process queue consumer and the Service Bus
 * triggers each implement it once, and settleBatch decides and carries out the rest.
 */
export interface MessageHost {
  readonly queue: string;
  readonly logger: Logger;
  complete(index: number): Promise<void>;
  /**
   * Gives the whole batch back for redelivery. A Functions trigger can only abandon a batch as a
   * whole (a throw), so both hosts do that; the engine makes the redelivered copies of the
   * others harmless (duplicates).
   */
  abandonAll(error: unknown): Promise<void>;
  deadLetter(index: number, reason: string, description: string): Promise<void>;
  /** Sends a copy of a received message to this queue, visible at `at`. */
  sendCopy(copy: RescheduledMessage, at: Date): Promise<void>;
}

type Outcome = Extract<HandlingResult, { ok: true }>['outcome'];

/**
 * What the engine made of a batch, or, when it threw, that error for every message of it: the one
 * place a throw becomes a result the settlement policy reads.
 */
export async function handlingBatch(count: number, work: () => Promise<readonly HandlingResult[]>): Promise<HandlingResult[]> {
  try {
    return [...(await work())];
  } catch (error) {
    return Array.from({ length: count }, () => ({ ok: false, error }));
  }
}

/** handlingBatch for one message and its outcome. */
export async function handling(work: () => Promise<Outcome>): Promise<HandlingResult> {
  const [result] = await handlingBatch(1, async () => [{ ok: true, outcome: await work() }]);
  return result as HandlingResult;
}

/**
 * The one place a settlement is carried out, for every host: each message's fate is decided by
 * core/message-settlement.ts; if any must be redelivered the batch is given back whole; otherwise
 * each is completed, dead-lettered with its reason, or rescheduled (its copy is sent first, then the
 * original completed: were the process to die between the two, a duplicate is harmless, a loss is
 * not). Returns how many messages ended in each outcome.
 */
export async function settleBatch(
  host: MessageHost,
  messages: readonly HeldMessage[],
  results: readonly HandlingResult[],
  policy?: SettlementPolicy,
): Promise<Record<string, number>> {
  const settlements: Settlement[] = messages.map((message, index) =>
    decideSettlement(
      results[index] ?? { ok: false, error: new Error('the handler returned no result for this message') },
      { deliveryCount: message.deliveryCount, reschedules: reschedulesOf(message.applicationProperties) },
      policy,
    ),
  );
  const abandoned = settlements.findIndex((settlement) => settlement.action === 'abandon');
  if (abandoned >= 0) {
    const result = results[abandoned];
    const error = result && !result.ok ? result.error : new Error((settlements[abandoned] as Extract<Settlement, { action: 'abandon' }>).reason);
    host.logger.warn('message abandoned for redelivery', {
      event: 'coremachine.message.retry',
      queue: host.queue,
      messages: messages.map(where),
      reason: (settlements[abandoned] as Extract<Settlement, { action: 'abandon' }>).reason,
    });
    await host.abandonAll(error);
    return { abandoned: messages.length };
  }
  const counts: Record<string, number> = {};
  for (const [index, message] of messages.entries()) {
    const settlement = settlements[index] as Settlement;
    const result = results[index];
    const label = result?.ok ? (result.outcome?.kind ?? 'ok') : settlement.action;
    counts[label] = (counts[label] ?? 0) + 1;
    if (settlement.action === 'complete') {
      await host.complete(index);
    } else if (settlement.action === 'deadLetter') {
      host.logger.error(`message dead-lettered: ${settlement.description}`, {
        event: 'coremachine.message.discarded',
        queue: host.queue,
        ...where(message),
        reason: settlement.reason,
        description: settlement.description,
        body: describeBody(message.body),
      });
      await host.deadLetter(index, settlement.reason, settlement.description);
    } else if (settlement.action === 'reschedule') {
      const reschedules = reschedulesOf(message.applicationProperties) + 1;
      const copy: RescheduledMessage = {
        messageId: rescheduledMessageId(message.messageId ?? 'message', reschedules),
        body: message.body,
        applicationProperties: { ...message.applicationProperties, [RESCHEDULES_PROPERTY]: reschedules },
      };
      const fields = { queue: host.queue, ...where(message), copy: copy.messageId, delayMs: settlement.delayMs, reschedules, reason: settlement.reason };
      // A deferral is a concurrency or rate limit doing its job, not a fault worth a warning.
      if (settlement.deferred) host.logger.debug('message deferred by a limit', { event: 'coremachine.message.deferred', ...fields });
      else host.logger.warn('message rescheduled after a transient fault', { event: 'coremachine.message.rescheduled', ...fields });
      await host.sendCopy(copy, new Date(Date.now() + settlement.delayMs));
      await host.complete(index);
    }
  }
  return counts;
}

/** A discarded body is logged for the operator, but a log line is not the place for 256 KB. */
const MAX_LOGGED_BODY_CHARS = 8_192;

function describeBody(body: unknown): string {
  let text: string;
  try {
    text = typeof body === 'string' ? body : (JSON.stringify(body) ?? String(body));
  } catch (error) {
    // A body JSON cannot encode (a cycle) is still described, never lost from the line.
    text = `${String(body)} (not JSON: ${error instanceof Error ? error.message : String(error)})`;
  }
  return text.length > MAX_LOGGED_BODY_CHARS ? `${text.slice(0, MAX_LOGGED_BODY_CHARS)}…(truncated)` : text;
}

function where(message: HeldMessage): { messageId: string | undefined; deliveryCount: number | undefined } {
  return { messageId: message.messageId, deliveryCount: message.deliveryCount };
}
