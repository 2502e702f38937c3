import { z } from 'zod';

/**
 * Deadlines: a job type may declare `timeoutSeconds` for the whole job and for each stage; a
 * submission may override the job's within bounds. Both deadlines are wall-clock: they keep
 * running while the job is QUEUED or PAUSED, so neither a backlog nor a pause can extend them.
 */

/** The longest timeout anything may declare or ask for: 30 days. */
export const MAX_TIMEOUT_SECONDS = 30 * 24 * 3600;

/** The HTTP header that overrides the job's timeout for one submission. */
export const TIMEOUT_HEADER = 'CoreMachine-Timeout-Seconds';

/**
 * A timeout from a header ("600") or from code (600): whole seconds, 1 … MAX_TIMEOUT_SECONDS.
 * Only plain decimal digits count, as for every other number the API reads.
 */
export const TimeoutSeconds = z.preprocess(
  (value) => (typeof value === 'string' && /^\d{1,12}$/.test(value) ? Number(value) : value),
  z
    .number({ error: 'timeoutSeconds must be a whole number of seconds written in decimal digits' })
    .int('timeoutSeconds must be a whole number of seconds')
    .min(1, 'timeoutSeconds is at least 1')
    .max(MAX_TIMEOUT_SECONDS, `timeoutSeconds is at most ${MAX_TIMEOUT_SECONDS} (30 days)`),
);

/**
 * The bound a per-submission override must respect: it may only shorten a timeout the job type
 * declares (its author's guard for what the job may cost); a job type that declares none accepts
 * any timeout up to MAX_TIMEOUT_SECONDS. Returns a message for an override out of bounds.
 */
export function timeoutOverrideProblem(declared: number | undefined, override: number): string | undefined {
  if (declared !== undefined && override > declared) {
    return `timeoutSeconds ${override} exceeds the job type's own timeout of ${declared} s: an override may only shorten it`;
  }
  return undefined;
}

/** Checks a declared timeout when a job or stage is defined, so a bad one fails at registration. */
export function checkDeclaredTimeout(what: string, timeoutSeconds: number | undefined): void {
  if (timeoutSeconds === undefined) return;
  if (!(Number.isInteger(timeoutSeconds) && timeoutSeconds >= 1 && timeoutSeconds <= MAX_TIMEOUT_SECONDS)) {
    throw new TypeError(`${what}: timeoutSeconds must be an integer from 1 to ${MAX_TIMEOUT_SECONDS}`);
  }
}
