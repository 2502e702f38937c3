import { describeInputIssues, findUnsafeJson } from '../models/http-input';

/**
 * What PostgreSQL's jsonb refuses in a value the engine is about to store (a task result, a task
 * spec, a finalize result): a NUL or a lone UTF-16 surrogate in a string or key. Refused by
 * PostgreSQL, such a value failed its whole statement on every redelivery; found here, it fails
 * only the task or stage that produced it, at once, with the path of the bad string.
 *
 * `json` is the value's JSON.stringify text. JSON.stringify writes both kinds as \u escapes (every
 * other character it writes as itself or a short escape), so a text without "\u" is storable and
 * the walk is skipped for nearly every value.
 */
export function unstorableJsonReason(value: unknown, json: string): string | undefined {
  if (!json.includes('\\u')) return undefined;
  const issues = findUnsafeJson(value, Number.POSITIVE_INFINITY);
  return issues.length === 0 ? undefined : describeInputIssues(issues);
}

/**
 * The JSON text the engine stores for a value (a task result, a task spec, a finalize result), or
 * what stops it, phrased to follow the value's name: "is not JSON-serialisable" (a function, a
 * symbol) or "cannot be stored: <path>: <what>". JSON.stringify's own throws (a BigInt, a cycle)
 * propagate as they are.
 */
export function jsonToStore(value: unknown): { json: string; problem?: undefined } | { json?: undefined; problem: string } {
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined) return { problem: 'is not JSON-serialisable' };
  const unstorable = unstorableJsonReason(value, json);
  return unstorable === undefined ? { json } : { problem: `cannot be stored: ${unstorable}` };
}

// A \u escape of NUL or of a surrogate, not itself escaped (preceded by an even number of backslashes).
const NUL_ESCAPE = /(?<!\\)((?:\\\\)*)\\u0000/g;
const SURROGATE_ESCAPE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/gi;

/**
 * The value with what jsonb cannot store made visible instead (NUL as the text `\u0000`, a lone
 * surrogate as U+FFFD), for what must be recorded whatever it holds: an error's issues.
 * JSON.stringify writes paired surrogates as characters, so an escaped surrogate is a lone one.
 */
export function storableJson<T>(value: T): T {
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined || unstorableJsonReason(value, json) === undefined) return value;
  return JSON.parse(json.replace(NUL_ESCAPE, '$1\\\\u0000').replace(SURROGATE_ESCAPE, '$1\\ufffd')) as T;
}
