import { retryDelayMs, TaskFailure, type AnyTaskDefinition } from '../../models';
import { findCause, isNonRetryable } from '../errors';

/**
 * The longest a retry can be put off when the task type's retry policy sets no maxDelayMs. A
 * requested retryAfterMs beyond it (from a remote worker or a handler's TaskFailure) would park
 * the task, and keep its job PROCESSING, for longer than any operator waits; a day still covers a
 * rate limit that resets daily.
 */
export const MAX_RETRY_DELAY_MS = 24 * 60 * 60 * 1000;

/** A requested delay, capped by the task type's retry.maxDelayMs and by MAX_RETRY_DELAY_MS. */
export function cappedRetryDelayMs(definition: AnyTaskDefinition | undefined, requestedMs: number): number {
  return Math.max(0, Math.min(requestedMs, definition?.retry?.maxDelayMs ?? MAX_RETRY_DELAY_MS, MAX_RETRY_DELAY_MS));
}

/** When the next attempt is due, or undefined when the failure is final. */
export function nextAttemptAt(definition: AnyTaskDefinition | undefined, attempt: number, error: unknown): Date | undefined {
  const policy = definition?.retry;
  if (!policy || attempt >= policy.maxAttempts) return undefined;
  const failure = findCause(error, (candidate): candidate is TaskFailure => TaskFailure.is(candidate));
  if (isNonRetryable(error) || failure?.nonRetryable) return undefined;
  const delayMs = failure?.retryAfterMs === undefined ? retryDelayMs(policy, attempt) : cappedRetryDelayMs(definition, failure.retryAfterMs);
  return new Date(Date.now() + delayMs);
}
