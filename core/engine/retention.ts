import { errorToShape, InvalidTransitionError, JobNotFoundError } from '../errors';
import type { ErrorShape } from '../../models';
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

/** What became of the payload blobs a change left unreferenced (deleteBlobs). */
export interface BlobCleanupReport {
  blobsDeleted: number;
  /** Blobs a failed delete left: no row references them, so the orphan sweep deletes them later. */
  blobsLeft: number;
  /** Why the last failed delete failed. */
  blobError?: ErrorShape;
}

export const NO_BLOBS: BlobCleanupReport = { blobsDeleted: 0, blobsLeft: 0 };

function addBlobReports(a: BlobCleanupReport, b: BlobCleanupReport): BlobCleanupReport {
  const blobError = b.blobError ?? a.blobError;
  return { blobsDeleted: a.blobsDeleted + b.blobsDeleted, blobsLeft: a.blobsLeft + b.blobsLeft, ...(blobError ? { blobError } : {}) };
}

export interface RetentionReport extends PurgeCounts, BlobCleanupReport {
  batches: number;
}

export const NOTHING_PURGED: RetentionReport = { ...NO_PURGE, ...NO_BLOBS, batches: 0 };

/**
 * Deletes finished jobs past the retention window with all their rows, one short transaction per
 * batch. Jobs locked by anyone else are skipped, so a sweep never blocks the engine, and sweeps on
 * several instances share the work instead of colliding.
 */
export async function purgeExpiredJobs(unitOfWork: UnitOfWork, options: RetentionOptions, payloads?: Payloads): Promise<RetentionReport> {
  if (options.retentionDays <= 0) return NOTHING_PURGED;
  let total: PurgeCounts = NO_PURGE;
  let blobReport = NO_BLOBS;
  let batches = 0;
  while (batches < options.maxBatches) {
    const { counts, keys } = await commit(unitOfWork, async ({ client }) => {
      const jobIds = await lockExpiredJobs(client, options.retentionDays, options.jobsPerBatch, options.tasksPerBatch);
      const keys = payloads?.store ? await payloadKeysOfJobs(client, jobIds) : [];
      return { value: { counts: await deleteJobsAndRows(client, jobIds), keys } };
    });
    blobReport = addBlobReports(blobReport, await deleteBlobs(payloads, keys));
    if (counts.jobs === 0) break;
    batches += 1;
    total = addCounts(total, counts);
  }
  return { ...total, ...blobReport, batches };
}

/**
 * An operator deletes one finished job and everything it left behind. A job that may still change
 * (QUEUED, PROCESSING, PAUSED) is refused: cancel it first. A FAILED job's handler that is still
 * running finds its task gone when it reports, and its result is fenced like any lost claim.
 */
export async function deleteJob(unitOfWork: UnitOfWork, jobId: string, payloads?: Payloads): Promise<PurgeCounts & BlobCleanupReport> {
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
    const keys = payloads?.store ? await payloadKeysOfJobs(client, [jobId]) : [];
    return { value: { counts: await deleteJobsAndRows(client, [jobId]), keys } };
  });
  return { ...counts, ...(await deleteBlobs(payloads, keys)) };
}

/**
 * The blobs of jobs whose rows are gone (or of values a re-run replaced), deleted once the change
 * committed (never before: a rollback would leave rows pointing at nothing). A failed delete loses
 * nothing: no row references them any more, so the janitor's orphan sweep deletes them after its
 * grace period. The change itself succeeded, so the failure is not thrown: it is returned, and each
 * caller reports it (the janitor's run and log, the DELETE and re-run answers).
 */
export async function deleteBlobs(payloads: Payloads | undefined, keys: readonly string[]): Promise<BlobCleanupReport> {
  if (!payloads?.store || keys.length === 0) return NO_BLOBS;
  try {
    await payloads.delete(keys);
    return { blobsDeleted: keys.length, blobsLeft: 0 };
  } catch (error) {
    return { blobsDeleted: 0, blobsLeft: keys.length, blobError: errorToShape(error) };
  }
}
