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
import { singles, taskOfPack, type UnpackedBatch } from './task-packing';
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
 * not). A pack (core/transport/task-packing.ts) is completed once every task of it is settled: a
 * task of it to be rescheduled or dead-lettered goes on as a message of its own (a dead-lettered
 * one is handled alone again and dead-lettered there, its neighbours untouched), and a pack
 * delivered before is split into single messages unhandled. Returns how many messages (tasks, for
 * a pack) ended in each outcome.
 */
export async function settleBatch(
  host: MessageHost,
  batch: readonly HeldMessage[] | UnpackedBatch,
  results: readonly HandlingResult[],
  policy?: SettlementPolicy,
): Promise<Record<string, number>> {
  const unpacked = isUnpacked(batch) ? batch : singles(batch);
  const { physical, logical } = unpacked;
  const settlements: Settlement[] = logical.map((message, index) =>
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
      messages: physical.map(where),
      reason: (settlements[abandoned] as Extract<Settlement, { action: 'abandon' }>).reason,
    });
    await host.abandonAll(error);
    return { abandoned: physical.length };
  }
  const counts: Record<string, number> = {};
  const note = (label: string) => (counts[label] = (counts[label] ?? 0) + 1);
  // The logical messages of each physical one, grouped in one pass (a batch of packs holds many).
  const membersOf: number[][] = physical.map(() => []);
  unpacked.owner.forEach((owner, position) => membersOf[owner]?.push(position));
  for (const [index, message] of physical.entries()) {
    const tasks = unpacked.packs.get(index);
    if (unpacked.split.has(index) && tasks) {
      host.logger.warn('a pack delivered again is split into single messages', {
        event: 'coremachine.message.split',
        queue: host.queue,
        ...where(message),
        tasks: tasks.length,
      });
      for (const task of tasks) await host.sendCopy(singleCopy(taskOfPack(message, task)), new Date());
      await host.complete(index);
      note('split');
      continue;
    }
    const members = membersOf[index] ?? [];
    if (!tasks) {
      const position = members[0] as number;
      const result = results[position];
      const settlement = settlements[position] as Settlement;
      note(result?.ok ? (result.outcome?.kind ?? 'ok') : settlement.action);
      if (settlement.action === 'complete') await host.complete(index);
      else if (settlement.action === 'deadLetter') {
        logDeadLetter(host, message, settlement);
        await host.deadLetter(index, settlement.reason, settlement.description);
      } else if (settlement.action === 'reschedule') {
        await sendRescheduled(host, message, settlement);
        await host.complete(index);
      }
      continue;
    }
    for (const position of members) {
      const task = logical[position] as HeldMessage;
      const result = results[position];
      const settlement = settlements[position] as Settlement;
      note(result?.ok ? (result.outcome?.kind ?? 'ok') : settlement.action);
      if (settlement.action === 'reschedule') await sendRescheduled(host, task, settlement);
      else if (settlement.action === 'deadLetter') {
        // A pack cannot be dead-lettered for one of its tasks: the task goes on alone, where the
        // same refusal dead-letters it with its reason and the engine's own message id.
        host.logger.warn(`a task of a pack is sent on alone to be dead-lettered: ${settlement.description}`, {
          event: 'coremachine.message.split',
          queue: host.queue,
          ...where(task),
          pack: message.messageId,
          reason: settlement.reason,
        });
        await host.sendCopy(singleCopy(task), new Date());
      }
    }
    await host.complete(index);
  }
  return counts;
}

function isUnpacked(batch: readonly HeldMessage[] | UnpackedBatch): batch is UnpackedBatch {
  return !Array.isArray(batch);
}

/** A task of a pack as the single message it would have been sent as (its own id: duplicate detection drops a second split). */
function singleCopy(task: HeldMessage): RescheduledMessage {
  return { messageId: task.messageId ?? 'message', body: task.body, applicationProperties: task.applicationProperties };
}

function logDeadLetter(host: MessageHost, message: HeldMessage, settlement: Extract<Settlement, { action: 'deadLetter' }>): void {
  host.logger.error(`message dead-lettered: ${settlement.description}`, {
    event: 'coremachine.message.discarded',
    queue: host.queue,
    ...where(message),
    reason: settlement.reason,
    description: settlement.description,
    body: describeBody(message.body),
  });
}

/** The copy of a message to be handled later, under a new id so duplicate detection keeps it. */
async function sendRescheduled(host: MessageHost, message: HeldMessage, settlement: Extract<Settlement, { action: 'reschedule' }>): Promise<void> {
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
