import { BULK_ACTIONS, type BulkAction, type BulkOutcome } from '../../models/bulk-jobs';
import type { Wire } from './api-client';
import { UsageError, type CliIo } from './io';
import type { parse as parseFn } from './remote';
import { oneLine } from './visible';

type Parse = typeof parseFn;

const PAST: Readonly<Record<BulkAction, string>> = { cancel: 'cancelled', retry: 'retried', delete: 'deleted' };

/**
 * `coremachine bulk cancel|retry|delete [--job-type T] [--status S]... [--label k=v]... [--since ISO]
 * [--until ISO] [--limit N] [--cursor C] [--dry-run] [--json]` (POST bulk/jobs/{action}). At least
 * one filter; the server checks them (400 with why). Jobs that could not take the action are
 * printed with the reason, and then the command exits 1; a dry run exits 0.
 */
export async function bulkJobs(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const options = {
    'job-type': { type: 'string' },
    status: { type: 'string', multiple: true },
    label: { type: 'string', multiple: true },
    since: { type: 'string' },
    until: { type: 'string' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  } as const;
  const { values, positionals, clientFor } = parse(args, options, ['action']);
  const action = positionals[0] ?? '';
  if (!(BULK_ACTIONS as readonly string[]).includes(action))
    throw new UsageError(`the action is one of ${BULK_ACTIONS.join(', ')}, not ${JSON.stringify(action)}`);
  const text = (name: string) => (typeof values[name] === 'string' ? values[name] : undefined);
  const list = (name: string) => {
    const value = values[name];
    return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
  };
  const filter = {
    ...(text('job-type') === undefined ? {} : { jobType: text('job-type') }),
    ...(list('status').length > 0 ? { status: list('status') } : {}),
    ...(list('label').length > 0 ? { label: list('label').map(labelFilter) } : {}),
    ...(text('since') === undefined ? {} : { createdAfter: text('since') }),
    ...(text('until') === undefined ? {} : { createdBefore: text('until') }),
  };
  if (Object.keys(filter).length === 0)
    throw new UsageError('give at least one filter (--job-type, --status, --label, --since, --until): an empty filter would match every job');
  const limit = text('limit');
  const body = {
    filter,
    dryRun: values['dry-run'] === true,
    // The server parses the number and its bounds; a limit that is not one is its 400 to give.
    ...(limit === undefined ? {} : { limit }),
    ...(text('cursor') === undefined ? {} : { cursor: text('cursor') }),
  };
  const outcome = await clientFor(io).request<Wire<BulkOutcome>>('POST', `bulk/jobs/${action}`, body);
  if (values.json === true) {
    io.out(`${JSON.stringify(outcome, null, 2)}\n`);
    return outcome.dryRun || outcome.counts.refused === 0 ? 0 : 1;
  }
  const verb = PAST[action as BulkAction];
  const { matched, changed, refused } = outcome.counts;
  io.out(
    outcome.dryRun
      ? `dry run: ${matched} job(s) match; ${changed} would be ${verb}, ${refused} cannot be\n`
      : `${action}: ${matched} job(s) matched; ${changed} ${verb}, ${refused} refused\n`,
  );
  for (const jobId of outcome.changed) io.out(`  ${outcome.dryRun ? 'would be ' : ''}${verb}  ${oneLine(jobId)}\n`);
  for (const refusal of outcome.refused) io.out(`  refused  ${oneLine(refusal.jobId)} (${oneLine(refusal.status)}): ${oneLine(refusal.reason)}\n`);
  if (outcome.nextCursor) io.out(`more jobs match: run it again with --cursor ${oneLine(outcome.nextCursor)}\n`);
  return outcome.dryRun || refused === 0 ? 0 : 1;
}

/** `key=value` as `jobs --label` takes it, or `key:value` as the API does: a key holds neither character. */
function labelFilter(flag: string): string {
  const cut = flag.search(/[=:]/);
  if (cut <= 0) throw new UsageError(`--label takes key=value (or key:value), not ${JSON.stringify(flag)}`);
  return `${flag.slice(0, cut)}:${flag.slice(cut + 1)}`;
}
