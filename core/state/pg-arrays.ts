/**
 * Array parameters for the batch statements, encoded in one join each. The pg driver's own
 * encoder quotes and escapes every element through two regular expressions and concatenates the
 * literal piece by piece: for the claim, settle and insert arrays that was a sixth of everything
 * the bench process allocated. JSON values travel as one JSON array document instead of a jsonb[]
 * literal, so they need no escaping at all and PostgreSQL parses them once.
 */

/** Elements that need no quoting in an array literal: no quote, backslash, comma, brace or space. */
const PLAIN = /^[A-Za-z0-9_.:+-]+$/;

/** A text[] literal; NULL for null, quoted only where the element needs it. */
export function textArray(values: ReadonlyArray<string | null | undefined>): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    // A run of one value (a batch's slot keys, its job id) is encoded once.
    if (i > 0 && value === values[i - 1]) parts[i] = parts[i - 1] as string;
    else if (value === null || value === undefined) parts[i] = 'NULL';
    // An unquoted NULL (any case) would be read as a null element.
    else if (PLAIN.test(value) && !(value.length === 4 && value.toUpperCase() === 'NULL')) parts[i] = value;
    else parts[i] = `"${value.replace(/[\\"]/g, '\\$&')}"`;
  }
  return enclosed(parts, '{', '}');
}

/** An int[] / float8[] literal of finite numbers. */
export function numberArray(values: readonly number[]): string {
  for (const value of values) if (!Number.isFinite(value)) throw new RangeError(`array element ${value} is not a finite number`);
  return `{${values.join(',')}}`;
}

/** A bool[] literal. */
export function boolArray(values: readonly boolean[]): string {
  return `{${values.map((value) => (value ? 't' : 'f')).join(',')}}`;
}

/** A timestamptz[] literal (ISO 8601, UTC); NULL for null. */
export function timestampArray(values: ReadonlyArray<Date | null>): string {
  return textArray(values.map((value) => (value === null ? null : value.toISOString())));
}

/**
 * One JSON array document of already-serialised JSON texts, read in SQL as `$n::jsonb -> i`
 * (null elements for rows without a value). Each text must be a JSON.stringify result.
 */
export function jsonArray(jsonTexts: ReadonlyArray<string | null>): string {
  return enclosed(
    jsonTexts.map((json) => json ?? 'null'),
    '[',
    ']',
  );
}

/**
 * `open`, the parts joined by commas, `close`: one flat string made by the join itself. A template
 * literal around a long join is a cons string, which the driver flattens into a second copy when it
 * measures the parameter (a claim's or a settle's task ids: tens of kilobytes each). `parts` is changed.
 */
function enclosed(parts: string[], open: string, close: string): string {
  if (parts.length === 0) return open + close;
  parts[0] = open + (parts[0] as string);
  parts[parts.length - 1] = (parts[parts.length - 1] as string) + close;
  return parts.join(',');
}
