import { z } from 'zod';

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
/** JSON bodies nested deeper than this are refused: real parameters are shallow, and recursive code downstream is not. */
export const MAX_JSON_DEPTH = 64;

/** Page size maxima, documented in the README's HTTP API table. */
export const PAGE_LIMITS = { jobs: 500, tasks: 5000, events: 5000, deadLetters: 1000 } as const;

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why PostgreSQL (text, jsonb) or any UTF-8 consumer cannot take this string, or undefined. */
export function unsafeTextReason(text: string): string | undefined {
  if (text.includes('\u0000')) return 'contains a NUL character (\\u0000), which PostgreSQL text and jsonb cannot store';
  if (LONE_SURROGATE.test(text)) return 'contains a lone UTF-16 surrogate, which is not valid Unicode';
  return undefined;
}

/**
 * The string with what PostgreSQL cannot store made visible instead: NUL as the six characters
 * `\u0000`, a lone surrogate as U+FFFD. For text that must be kept whatever it holds (a dead
 * letter's id, reason and description); input that can be refused is refused instead.
 */
export function storableText(text: string): string {
  if (unsafeTextReason(text) === undefined) return text;
  return text.replaceAll('\u0000', '\\u0000').replace(new RegExp(LONE_SURROGATE.source, 'g'), '\ufffd');
}

/** A bounded string without NUL or lone surrogates. */
export function safeText(maxLength: number, minLength = 1) {
  return z
    .string()
    .min(minLength)
    .max(maxLength)
    .check((ctx) => {
      const reason = unsafeTextReason(ctx.value);
      if (reason) ctx.issues.push({ code: 'custom', input: ctx.value, message: reason });
    });
}

export interface InputIssue {
  code: 'custom';
  path: Array<string | number>;
  message: string;
}

const MAX_REPORTED_ISSUES = 20;

/** The issues of findUnsafeJson on one line: "path: what is wrong; …". */
export function describeInputIssues(issues: readonly InputIssue[]): string {
  return issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(the value)'}: ${issue.message}`).join('; ');
}

/**
 * Every string value and key of a parsed JSON document that the database cannot store, and
 * nesting beyond MAX_JSON_DEPTH. Iterative, so a hostile document cannot exhaust the stack here.
 */
export function findUnsafeJson(document: unknown, maxDepth = MAX_JSON_DEPTH): InputIssue[] {
  const issues: InputIssue[] = [];
  const pending: Array<{ value: unknown; path: Array<string | number> }> = [{ value: document, path: [] }];
  while (pending.length > 0 && issues.length < MAX_REPORTED_ISSUES) {
    const { value, path } = pending.pop() as { value: unknown; path: Array<string | number> };
    if (typeof value === 'string') {
      const reason = unsafeTextReason(value);
      if (reason) issues.push({ code: 'custom', path, message: `string ${reason}` });
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (path.length >= maxDepth) {
      issues.push({ code: 'custom', path, message: `nested deeper than ${maxDepth} levels` });
      continue;
    }
    if (Array.isArray(value)) {
      value.forEach((item, index) => pending.push({ value: item, path: [...path, index] }));
      continue;
    }
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      const reason = unsafeTextReason(key);
      if (reason) issues.push({ code: 'custom', path: [...path, key], message: `key ${reason}` });
      pending.push({ value: item, path: [...path, key] });
    }
  }
  return issues;
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
