import { errorToShape, InvalidTransitionError, JobNotFoundError } from '../errors';
import type { Logger } from '../logger';
import type { Payloads } from '../payloads/payloads';
import { findJob } from '../state/jobs-store';
import { payloadKeysOfJobs } from '../state/payloads-store';
import type { UnitOfWork } from './unit-of-work';
import { addCounts, DELETABLE_JOB_STATUSES, deleteJobsAndRows, lockExpiredJobs, NO_PURGE, type PurgeCounts } from '../state/retention-store';
import { commit } from './commit';

export interface RetentionOptions {
  /** Finished jobs older than this are deleted; 0 keeps everything. */
  retentionDays: number;
  /** Jobs deleted per transaction. */
  jobsPerBatch: number;
  /** Tasks deleted per transaction, roughly: a batch stops adding jobs once their tasks reach this. */
  tasksPerBatch: number;
  /** Transactions per sweep: what is left waits for the next sweep. */
  maxBatches: number;
}

// 20,000 tasks take about half a second to delete (docs/operating.md, "Retention"), so no transaction holds
// its locks long; 10 batches a minute purge far faster than one small server fills.
export const DEFAULT_RETENTION: Omit<RetentionOptions, 'retentionDays'> = { jobsPerBatch: 100, tasksPerBatch: 20_000, maxBatches: 10 };

export interface RetentionReport extends PurgeCounts {
  batches: number;
}

export const NOTHING_PURGED: RetentionReport = { ...NO_PURGE, batches: 0 };

/**
 * Deletes finished jobs past the retention window with all their rows, one short transaction per
 * batch. Jobs locked by anyone else are skipped, so a sweep never blocks the engine, and sweeps on
 * several instances share the work instead of colliding.
 */
export async function purgeExpiredJobs(unitOfWork: UnitOfWork, options: RetentionOptions, blobs?: BlobCleanup): Promise<RetentionReport> {
  if (options.retentionDays <= 0) return NOTHING_PURGED;
  let total: PurgeCounts = NO_PURGE;
  let batches = 0;
  while (batches < options.maxBatches) {
    const { counts, keys } = await commit(unitOfWork, async ({ client }) => {
      const jobIds = await lockExpiredJobs(client, options.retentionDays, options.jobsPerBatch, options.tasksPerBatch);
      const keys = blobs?.payloads.store ? await payloadKeysOfJobs(client, jobIds) : [];
      return { value: { counts: await deleteJobsAndRows(client, jobIds), keys } };
    });
    await deleteBlobs(blobs, keys);
    if (counts.jobs === 0) break;
    batches += 1;
    total = addCounts(total, counts);
  }
  return { ...total, batches };
}

/**
 * An operator deletes one finished job and everything it left behind. A job that may still change
 * (QUEUED, PROCESSING, PAUSED) is refused: cancel it first. A FAILED job's handler that is still
 * running finds its task gone when it reports, and its result is fenced like any lost claim.
 */
export async function deleteJob(unitOfWork: UnitOfWork, jobId: string, blobs?: BlobCleanup): Promise<PurgeCounts> {
  const { counts, keys } = await commit(unitOfWork, async ({ client }) => {
    const job = await findJob(client, jobId, true);
    if (!job) throw new JobNotFoundError(jobId);
    if (!DELETABLE_JOB_STATUSES.includes(job.status)) {
      throw new InvalidTransitionError(
        'job',
        jobId,
        job.status,
        'DELETED',
        `only a finished job (${DELETABLE_JOB_STATUSES.join(', ')}) can be deleted; cancel it first`,
      );
    }
    const keys = blobs?.payloads.store ? await payloadKeysOfJobs(client, [jobId]) : [];
    return { value: { counts: await deleteJobsAndRows(client, [jobId]), keys } };
  });
  await deleteBlobs(blobs, keys);
  return counts;
}

/** Where the blobs of deleted jobs go, and where a failure to delete them is told. */
export interface BlobCleanup {
  payloads: Payloads;
  logger: Logger;
}

/**
 * The blobs of jobs whose rows are gone (or of values a re-run replaced), deleted once the change
 * committed (never before: a rollback would leave rows pointing at nothing). A failure here loses
 * nothing: no row references them any more, so the janitor's orphan sweep deletes them after its
 * grace period.
 */
export async function deleteBlobs(blobs: BlobCleanup | undefined, keys: readonly string[]): Promise<void> {
  if (!blobs || keys.length === 0) return;
  try {
    await blobs.payloads.delete(keys);
  } catch (error) {
    blobs.logger.warn('deleting blobs no row references any more failed; the orphan sweep deletes them later', {
      blobs: keys.length,
      error: errorToShape(error),
    });
  }
}
