import { z } from 'zod';
import { unstorableTextReason } from './storable';

/**
 * The edge of the HTTP API: what a path id, a query parameter or a body may hold. Everything here
 * is checked before any SQL runs, with bounds that fit the columns the value ends up in, so bad
 * input is a 400 with the zod issues and never a driver error.
 */

/** PostgreSQL `int4` (stage, task_index, attempt, limits). */
export const INT4_MAX = 2_147_483_647;
/** `bigint` ids (events, dead letters) travel as JS numbers: only the safe range is exact. */
export const MAX_SAFE_ID = Number.MAX_SAFE_INTEGER;
/** Free-form names (job types, task types, worker ids): long enough for any real name. */
export const MAX_NAME_LENGTH = 200;

/** Page size maxima, documented in docs/http-api.md's route table. */
export const PAGE_LIMITS = { jobs: 500, tasks: 5000, events: 5000, deadLetters: 1000, taskLogs: 1000 } as const;

/** A bounded string without NUL or lone surrogates. */
export function safeText(maxLength: number, minLength = 1) {
  return z
    .string()
    .min(minLength)
    .max(maxLength)
    .check((ctx) => {
      const reason = unstorableTextReason(ctx.value);
      if (reason) ctx.issues.push({ code: 'custom', input: ctx.value, message: reason });
    });
}

/**
 * An integer from a query string ("42") or from code (42). Only plain decimal digits count:
 * "1.5", "1e3", "0x10", " 7" and "" are refused rather than coerced into something else.
 * Each check names its own problem: the schema's message alone would call 0 for a minimum of 1
 * "not written in decimal digits". A bound that fails stops there, so a number past 2^53 is
 * reported once, as above the maximum, not also as an unsafe integer.
 */
export function integerInput(min: number, max: number) {
  return z.preprocess(
    (value) => (typeof value === 'string' && /^-?\d{1,30}$/.test(value) ? Number(value) : value),
    z
      .number({ error: 'expected an integer written in decimal digits' })
      .min(min, { error: `expected at least ${min}`, abort: true })
      .max(max, { error: `expected at most ${max}`, abort: true })
      .int('expected a whole number'),
  );
}

export const JobId = z.string().regex(/^[0-9a-f]{64}$/, 'a job id is 64 lowercase hexadecimal characters');
/** `${jobId}-s${stage}-t${index}`, as core/identity.ts derives it. */
export const TaskId = z.string().regex(/^[0-9a-f]{64}-s\d{1,10}-t\d{1,10}$/, 'a task id is <64-hex job id>-s<stage>-t<index>');
export const JobTypeName = safeText(MAX_NAME_LENGTH);
