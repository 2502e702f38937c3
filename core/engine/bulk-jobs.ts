import { BULK_ACTION_FROM, type BulkAction, type BulkOutcome, type BulkRefusal, type ParsedBulkRequest } from '../../models';
import type { Queryable } from '../db/pool';
import { InvalidTransitionError, JobNotFoundError } from '../errors';
import type { Logger } from '../logger';
import { selectBulkJobs } from '../state/bulk-store';

/** The one-job action a bulk call applies: cancel, retry or delete, each its own unit of work under the job's row lock. */
export type OneJobAction = (jobId: string) => Promise<unknown>;

/**
 * Cancel, retry or delete the jobs a filter matches, newest first, at most `limit` per call. Each
 * job goes through the same function as its one-job route, in its own transaction, so one job that
 * cannot take the action (its status, or it is gone) is listed with the reason and the others go on;
 * nothing is rolled back. A dry run answers from the jobs' statuses and the actions' rules and
 * changes nothing. Any other error (the database gone) stops the call: the jobs done so far stay
 * done, and the same call again finds the rest.
 */
export async function runBulk(db: Queryable, action: BulkAction, request: ParsedBulkRequest, apply: OneJobAction, logger: Logger): Promise<BulkOutcome> {
  const page = await selectBulkJobs(db, request.filter, { cursor: request.cursor, limit: request.limit });
  const changed: string[] = [];
  const refused: BulkRefusal[] = [];
  for (const job of page.jobs) {
    if (request.dryRun) {
      if (BULK_ACTION_FROM[action].includes(job.status)) changed.push(job.job_id);
      else
        refused.push({
          jobId: job.job_id,
          status: job.status,
          reason: `a ${job.status} job cannot be ${PAST[action]} (${action} applies to ${BULK_ACTION_FROM[action].join(', ')})`,
        });
      continue;
    }
    try {
      await apply(job.job_id);
      changed.push(job.job_id);
    } catch (error) {
      if (error instanceof InvalidTransitionError) refused.push({ jobId: job.job_id, status: error.from, reason: error.message });
      else if (error instanceof JobNotFoundError)
        refused.push({ jobId: job.job_id, status: job.status, reason: 'the job no longer exists (deleted meanwhile)' });
      else throw error;
    }
  }
  const outcome: BulkOutcome = {
    action,
    dryRun: request.dryRun,
    counts: { matched: page.jobs.length, changed: changed.length, refused: refused.length },
    changed,
    refused,
    nextCursor: page.nextCursor,
  };
  if (!request.dryRun) logger.info(`bulk ${action}`, { ...outcome.counts, more: page.nextCursor !== null });
  return outcome;
}

const PAST: Readonly<Record<BulkAction, string>> = { cancel: 'cancelled', retry: 'retried', delete: 'deleted' };
