import { isTransientDatabaseError, TransientDatabaseError } from './transient-errors';

/**
 * Bounded retries of the engine's own database work when the fault is the infrastructure's
 * (refused or killed connection, too many connections, serialization failure, deadlock).
 * Any other error is rethrown at once: retrying cannot fix wrong work.
 */
export interface TransientRetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

/**
 * About 3 s of trying in the worst case: long enough to ride out a killed connection or a
 * momentary connection-limit squeeze, short enough that a real outage reaches the message
 * settlement (which reschedules) instead of holding a Functions invocation.
 */
export const DEFAULT_TRANSIENT_RETRY: TransientRetryPolicy = { attempts: 6, initialDelayMs: 25, maxDelayMs: 1000 };

/**
 * A group commit holds results that cost a handler run each: it tries longer (~15 s) before
 * giving the messages back, so a short outage does not make handlers run twice.
 */
export const RESULT_COMMIT_RETRY: TransientRetryPolicy = { attempts: 10, initialDelayMs: 50, maxDelayMs: 3000 };

/** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
export function transientBackoffMs(policy: TransientRetryPolicy, retry: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** retry);
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/**
 * Runs `work`, again after a jittered pause while it fails transiently, at most `attempts` times.
 * The last transient failure is thrown as TransientDatabaseError (cause: the driver error), so
 * every caller up to the message settlement can tell it from a failure of the work itself.
 */
export async function retryTransient<T>(work: () => Promise<T>, policy: TransientRetryPolicy = DEFAULT_TRANSIENT_RETRY): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (!isTransientDatabaseError(error)) throw error;
      if (attempt >= policy.attempts) throw error instanceof TransientDatabaseError ? error : new TransientDatabaseError(error);
      await new Promise((resolve) => setTimeout(resolve, transientBackoffMs(policy, attempt - 1)));
    }
  }
}
