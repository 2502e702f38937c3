import type { BulkFilter, JobStatus } from '../../models';
import type { Queryable } from '../db/pool';
import { selectJobPage } from './job-page';

/**
 * The jobs a bulk operation takes (core/engine/bulk-jobs.ts): a filter's jobs, newest first, a
 * page at a time, read as the jobs list reads them (core/state/job-page.ts), with its cursor.
 * Nothing is locked here: each job is then locked by the one-job action that changes it, which
 * re-checks its status.
 */
export async function selectBulkJobs(
  db: Queryable,
  filter: BulkFilter,
  page: { cursor?: string | undefined; limit: number },
): Promise<{ jobs: Array<{ job_id: string; status: JobStatus }>; nextCursor: string | null }> {
  const { rows, nextCursor } = await selectJobPage<{ job_id: string; status: JobStatus }>(
    db,
    'j.job_id, j.status',
    { statuses: filter.status, jobType: filter.jobType, label: filter.label, createdAfter: filter.createdAfter, createdBefore: filter.createdBefore },
    page,
  );
  return { jobs: rows, nextCursor };
}
