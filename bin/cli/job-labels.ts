import { UsageError } from './io';
import { oneLine } from './visible';

/**
 * `--label key=value` as the CLI takes it (repeatable, on `submit` and `jobs`). The key cannot hold
 * `=`, so the first one splits and the value may hold more. The server checks keys and values
 * (models/job-labels.ts) and answers 400 with why; only the shape is the CLI's to check.
 */
export function labelPairs(flags: readonly string[]): Array<[string, string]> {
  return flags.map((flag) => {
    const cut = flag.indexOf('=');
    if (cut < 0) throw new UsageError(`--label takes key=value, not ${JSON.stringify(flag)}`);
    return [flag.slice(0, cut), flag.slice(cut + 1)];
  });
}

/**
 * The CoreMachine-Labels header: `key=value` items joined by commas, each side percent-encoded, so
 * a value may hold `,`, `=`, `%` or any character a header cannot carry as it is.
 */
export function labelsHeader(pairs: ReadonlyArray<readonly [string, string]>): string {
  return pairs.map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`).join(',');
}

/** `label` query values of GET jobs: `key:value`. */
export function labelFilters(pairs: ReadonlyArray<readonly [string, string]>): string[] {
  return pairs.map(([key, value]) => `${key}:${value}`);
}

/** Labels as one printed field, `key=value, key2=value2` by key, folded to one line (they came from the server). */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return oneLine(
    Object.entries(labels)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => `${key}=${value}`)
      .join(', '),
  );
}
