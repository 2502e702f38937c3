/**
 * The one settlement policy: what happens to a queue message once the engine handled it (or
 * failed to). The in-process worker and the Service Bus triggers both ask it and only carry out
 * the answer, so the two hosts cannot drift apart.
 *
 * - the engine's outcome (completed, failed, duplicate, ignored, fenced, started…) → complete;
 * - a message no redelivery can fix (malformed, unknown job, invalid submission) → dead-letter
 *   with its reason at once;
 * - a transient database fault → reschedule a copy later with backoff and jitter and complete
 *   the original: it is the infrastructure's fault, so it must not use up the message's
 *   delivery count and end in the dead-letter queue, however long the outage;
 * - a task message deferred by its task type's concurrency or rate limit → reschedule a copy later
 *   (backoff with jitter, or when the rate limit says a token is due) and complete the original:
 *   waiting for a slot is not an attempt, and must never use up the delivery count either;
 * - any other error → abandon (redelivered at once); on the last delivery Service Bus would
 *   dead-letter it as MaxDeliveryCountExceeded, so it is dead-lettered with the error instead.
 */
import { errorToShape, isNonRetryable } from './errors';
import { isTransientDatabaseError } from './db/transient-errors';

export type Settlement =
  | { action: 'complete' }
  | { action: 'abandon'; reason: string }
  | { action: 'deadLetter'; reason: string; description: string }
  | { action: 'reschedule'; delayMs: number; reason: string; deferred?: true };

/** What the engine reported for one message, or what it threw. */
export type HandlingResult = { ok: true; outcome?: { kind: string; error?: unknown; reason?: string; retryAfterMs?: number } } | { ok: false; error: unknown };

/** How many times this message was delivered (this delivery included) and rescheduled before. */
export interface Delivery {
  deliveryCount?: number | undefined;
  reschedules?: number | undefined;
}

export interface SettlementPolicy {
  /** The queue's max delivery count (Bicep: 10). */
  maxDeliveryCount: number;
  /** First reschedule delay; it doubles per reschedule of the same message up to the cap. */
  rescheduleBaseMs: number;
  rescheduleMaxMs: number;
  /** First delay of a message deferred by a concurrency limit; doubles per deferral up to the cap. */
  deferBaseMs: number;
  deferMaxMs: number;
  random?: () => number;
}

/** The Service Bus queues' maxDeliveryCount in infra/main.bicep (checked by tests/infra-consistency.test.ts). */
export const SERVICE_BUS_MAX_DELIVERY_COUNT = 10;

export const DEFAULT_SETTLEMENT_POLICY: SettlementPolicy = {
  maxDeliveryCount: SERVICE_BUS_MAX_DELIVERY_COUNT,
  rescheduleBaseMs: 1000,
  rescheduleMaxMs: 60_000,
  // A slot frees when a task ends, typically within seconds: wait short, and not long after it does.
  deferBaseMs: 1000,
  deferMaxMs: 30_000,
};

/** The application property that counts reschedules, so backoff grows across copies. */
export const RESCHEDULES_PROPERTY = 'coremachineReschedules';

export function decideSettlement(result: HandlingResult, delivery: Delivery, policy: SettlementPolicy = DEFAULT_SETTLEMENT_POLICY): Settlement {
  if (result.ok) {
    if (result.outcome?.kind === 'malformed') return deadLetter(result.outcome.error);
    if (result.outcome?.kind === 'deferred') {
      const backoff = jittered(policy.deferBaseMs, policy.deferMaxMs, delivery, policy);
      return {
        action: 'reschedule',
        delayMs: Math.max(backoff, result.outcome.retryAfterMs ?? 0),
        reason: result.outcome.reason ?? 'deferred by a limit',
        deferred: true,
      };
    }
    return { action: 'complete' };
  }
  const { error } = result;
  if (isNonRetryable(error)) return deadLetter(error);
  if (isTransientDatabaseError(error)) {
    return { action: 'reschedule', delayMs: jittered(policy.rescheduleBaseMs, policy.rescheduleMaxMs, delivery, policy), reason: describe(error) };
  }
  if ((delivery.deliveryCount ?? 1) >= policy.maxDeliveryCount) {
    const shape = errorToShape(error);
    return {
      action: 'deadLetter',
      reason: 'MaxDeliveryCountExceeded',
      description: `failed on delivery ${delivery.deliveryCount ?? '?'} of ${policy.maxDeliveryCount}: ${shape.type}: ${shape.message}`,
    };
  }
  return { action: 'abandon', reason: describe(error) };
}

/**
 * The copy's messageId: Service Bus duplicate detection would drop a copy sent under the
 * original id within its window. The engine is idempotent, so a copy is always safe.
 */
export function rescheduledMessageId(messageId: string, reschedules: number): string {
  return `${originalMessageId(messageId)}~r${reschedules}`;
}

/** The id a message was first sent under, before any rescheduled copy's suffix. */
export function originalMessageId(messageId: string): string {
  return messageId.replace(/~r\d+$/, '');
}

export function reschedulesOf(applicationProperties: Record<string, unknown> | undefined): number {
  const value = applicationProperties?.[RESCHEDULES_PROPERTY];
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : 0;
}

/** Doubling per reschedule of the same message up to the cap, then "equal jitter": between half the ceiling and the ceiling. */
function jittered(baseMs: number, maxMs: number, delivery: Delivery, policy: SettlementPolicy): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(delivery.reschedules ?? 0, 30));
  const random = policy.random ?? Math.random;
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

function deadLetter(error: unknown): Settlement {
  const shape = errorToShape(error);
  return { action: 'deadLetter', reason: shape.type, description: shape.message };
}

function describe(error: unknown): string {
  const shape = errorToShape(error);
  return `${shape.type}: ${shape.message}`;
}
