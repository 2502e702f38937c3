import { z } from 'zod';
import { safeText } from './http-input';

/**
 * Who and what: a job may carry a display name, who created it, and labels (key/value pairs) that
 * the list API, the CLI and the dashboard filter by and that job events carry. None of them is part
 * of the job's id: a resubmission returns the existing job unchanged, whatever it is named.
 *
 * They are shown to operators and printed in terminals, so they are bounded and printable; labels
 * are also Service Bus application properties (`label.<key>`) that subscriptions filter on.
 */

export const MAX_JOB_NAME_LENGTH = 200;
export const MAX_CREATED_BY_LENGTH = 200;
export const MAX_JOB_LABELS = 20;
export const MAX_LABEL_KEY_LENGTH = 63;
export const MAX_LABEL_VALUE_LENGTH = 200;

/** The HTTP headers of POST jobs/{jobType} (its body is the parameters); each value is percent-decoded. */
export const JOB_NAME_HEADER = 'CoreMachine-Job-Name';
export const CREATED_BY_HEADER = 'CoreMachine-Created-By';
/** `key=value,key2=value2`: a `,` or `=` (and `%`) inside a value is percent-encoded. */
export const LABELS_HEADER = 'CoreMachine-Labels';

/** Lower case, digits and `.`, `_`, `/`, `-`, starting with a letter or digit: safe in a URL, a shell, a Service Bus property name. */
export const LABEL_KEY_PATTERN = /^[a-z0-9][a-z0-9._/-]*$/;

// Control characters (C0, DEL, C1), line and paragraph separators, and the bidirectional controls
// that make text display in another order than it reads ("Trojan Source"): a name or label that
// holds them would print misleadingly in a terminal, a table or the dashboard.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** Bounded text without NUL or lone surrogates (safeText) and without the characters above. */
export function printableText(what: string, maxLength: number, minLength: number) {
  return safeText(maxLength, minLength).refine(
    (text) => !UNPRINTABLE.test(text),
    `${what} must be printable: no control characters, line breaks or bidirectional controls`,
  );
}

export const JobName = printableText('a job name', MAX_JOB_NAME_LENGTH, 1).refine((text) => text.trim() !== '', 'a job name must not be blank');
export const CreatedBy = printableText('createdBy', MAX_CREATED_BY_LENGTH, 1).refine((text) => text.trim() !== '', 'createdBy must not be blank');
export const LabelKey = z
  .string()
  .max(MAX_LABEL_KEY_LENGTH, `a label key is at most ${MAX_LABEL_KEY_LENGTH} characters`)
  .regex(LABEL_KEY_PATTERN, `a label key matches ${String(LABEL_KEY_PATTERN)}`);
/** May be empty: a label can be a plain tag (`urgent=`). */
export const LabelValue = printableText('a label value', MAX_LABEL_VALUE_LENGTH, 0);

/** What a key's problem is, or undefined: one message naming the key, not zod's generic "invalid key". */
function labelKeyProblem(key: string): string | undefined {
  const parsed = LabelKey.safeParse(key);
  return parsed.success ? undefined : `label key ${JSON.stringify(key.slice(0, 80))}: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`;
}

/** A job's labels: at most MAX_JOB_LABELS keys, each key and value checked. */
export const JobLabels = z.record(z.string(), LabelValue).check((ctx) => {
  const keys = Object.keys(ctx.value);
  if (keys.length > MAX_JOB_LABELS) {
    ctx.issues.push({ code: 'custom', input: ctx.value, message: `at most ${MAX_JOB_LABELS} labels, not ${keys.length}` });
  }
  for (const key of keys) {
    const problem = labelKeyProblem(key);
    if (problem) ctx.issues.push({ code: 'custom', input: key, path: [key], message: problem });
  }
});
export type JobLabels = z.infer<typeof JobLabels>;

/** The options of a submission (code, message, and the HTTP headers once decoded); null means absent. */
export const JobIdentity = z.strictObject({
  name: JobName.nullish(),
  createdBy: CreatedBy.nullish(),
  labels: JobLabels.nullish(),
});
export type JobIdentity = z.infer<typeof JobIdentity>;

/** `%XX` decoded as UTF-8; a `%` not followed by two hex digits, or bytes that are not UTF-8, is an issue. */
function percentDecoded(header: string) {
  return z.string().transform((text, ctx) => {
    try {
      return decodeURIComponent(text);
    } catch {
      ctx.issues.push({ code: 'custom', input: text, message: `${header} is percent-encoded UTF-8: write % as %25` });
      return z.NEVER;
    }
  });
}

/**
 * The labels header: comma-separated `key=value` items (blanks around an item are ignored, so the
 * header sent twice, which HTTP joins with ", ", reads as one list). Each key and value is
 * percent-decoded after the split, so a value may hold `,`, `=` or any printable character. A key
 * given twice is refused: one of the two values would be lost.
 */
const LabelsHeader = z.string().transform((text, ctx): Record<string, string> => {
  const labels: Record<string, string> = {};
  for (const item of text.split(',').map((part) => part.trim())) {
    if (item === '') continue;
    const cut = item.indexOf('=');
    if (cut < 0) {
      ctx.issues.push({ code: 'custom', input: text, message: `${LABELS_HEADER}: "${item.slice(0, 80)}" is not key=value` });
      continue;
    }
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(item.slice(0, cut));
      value = decodeURIComponent(item.slice(cut + 1));
    } catch {
      ctx.issues.push({ code: 'custom', input: text, message: `${LABELS_HEADER}: "${item.slice(0, 80)}" is not percent-encoded UTF-8 (write % as %25)` });
      continue;
    }
    // Own keys only: "constructor" is a fine label key and must not be found on Object.prototype.
    if (Object.hasOwn(labels, key)) {
      ctx.issues.push({ code: 'custom', input: text, path: [key], message: `${LABELS_HEADER}: label key "${key}" is given twice` });
      continue;
    }
    labels[key] = value;
  }
  return labels;
});

/**
 * POST jobs/{jobType}'s name, createdBy and labels headers, keyed by header name so an issue names
 * the header; decoded into JobIdentity's fields (which the engine checks again, as for every caller).
 */
export const JobIdentityHeaders = z
  .object({
    [JOB_NAME_HEADER]: percentDecoded(JOB_NAME_HEADER).pipe(JobName).optional(),
    [CREATED_BY_HEADER]: percentDecoded(CREATED_BY_HEADER).pipe(CreatedBy).optional(),
    [LABELS_HEADER]: LabelsHeader.pipe(JobLabels).optional(),
  })
  .transform((headers): JobIdentity => ({
    name: headers[JOB_NAME_HEADER],
    createdBy: headers[CREATED_BY_HEADER],
    labels: headers[LABELS_HEADER],
  }));

/**
 * One `label` filter of GET jobs: `key:value` (the key cannot hold `:`, so the first one splits;
 * the value may). Several filters must all match.
 */
export const LabelFilter = z.string().transform((text, ctx): [string, string] => {
  const cut = text.indexOf(':');
  if (cut < 0) {
    ctx.issues.push({ code: 'custom', input: text, message: `a label filter is key:value, not "${text.slice(0, 80)}"` });
    return z.NEVER;
  }
  return [text.slice(0, cut), text.slice(cut + 1)];
});

/** `label` once or repeated: every pair must match (a JSON containment test, `labels @> {...}`). */
export const LabelFilters = z
  .preprocess((value) => (typeof value === 'string' ? [value] : value), z.array(LabelFilter).max(MAX_JOB_LABELS, `at most ${MAX_JOB_LABELS} label filters`))
  .transform((pairs, ctx): Record<string, string> => {
    const wanted: Record<string, string> = {};
    for (const [key, value] of pairs) {
      // Two values for one key can never both match: say so rather than answer an empty list.
      if (Object.hasOwn(wanted, key) && wanted[key] !== value) {
        ctx.issues.push({ code: 'custom', input: pairs, path: [key], message: `label "${key}" is filtered by two different values` });
      }
      wanted[key] = value;
    }
    return wanted;
  })
  .pipe(JobLabels);
