/**
 * What PostgreSQL can store, in one place: text and jsonb refuse a NUL (U+0000) and a lone UTF-16
 * surrogate anywhere in a string or an object key, and the engine refuses JSON nested past
 * MAX_JSON_DEPTH. Input that can be refused is refused before any SQL runs (refuseUnstorable in
 * core/errors.ts, the HTTP edge, message schemas); what must be recorded whatever it holds (an
 * error, a dead letter) is made storable instead.
 */

/** JSON nested deeper than this is refused: real parameters are shallow, and recursive code downstream is not. */
export const MAX_JSON_DEPTH = 64;

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why PostgreSQL (text, jsonb) or any UTF-8 consumer cannot take this string, or undefined. */
export function unstorableTextReason(text: string): string | undefined {
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
  if (unstorableTextReason(text) === undefined) return text;
  return text.replaceAll('\u0000', '\\u0000').replace(new RegExp(LONE_SURROGATE.source, 'g'), '\ufffd');
}

export interface InputIssue {
  code: 'custom';
  path: Array<string | number>;
  message: string;
}

const MAX_REPORTED_ISSUES = 20;

/** The issues of unstorableJsonIssues on one line: "path: what is wrong; …". */
export function describeIssues(issues: readonly InputIssue[]): string {
  return issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(the value)'}: ${issue.message}`).join('; ');
}

/**
 * Every string value and key of a parsed JSON document that the database cannot store, and
 * nesting beyond MAX_JSON_DEPTH. Iterative, so a hostile document cannot exhaust the stack here.
 */
export function unstorableJsonIssues(document: unknown, maxDepth = MAX_JSON_DEPTH): InputIssue[] {
  const issues: InputIssue[] = [];
  const pending: Array<{ value: unknown; path: Array<string | number> }> = [{ value: document, path: [] }];
  while (pending.length > 0 && issues.length < MAX_REPORTED_ISSUES) {
    const { value, path } = pending.pop() as { value: unknown; path: Array<string | number> };
    if (typeof value === 'string') {
      const reason = unstorableTextReason(value);
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
      const reason = unstorableTextReason(key);
      if (reason) issues.push({ code: 'custom', path: [...path, key], message: `key ${reason}` });
      pending.push({ value: item, path: [...path, key] });
    }
  }
  return issues;
}

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
function unstorableJsonReason(value: unknown, json: string): string | undefined {
  if (!json.includes('\\u')) return undefined;
  const issues = unstorableJsonIssues(value, Number.POSITIVE_INFINITY);
  return issues.length === 0 ? undefined : describeIssues(issues);
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
