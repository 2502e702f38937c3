import type { JobRecord } from '../../models';
import type { JobListItem } from '../../models/job-list';
import type { Queryable } from '../db/pool';
import { toStageProgress } from '../state/rows';
import { findCurrentStages } from '../state/stages-store';

/**
 * A page of listed jobs with the counters of the stage each is at (GET /api/jobs): one more
 * statement per page, not per job. Read after the jobs, outside their snapshot: a job that moved on
 * in between shows the stage its row names, with that stage's counts, never another stage's.
 */
export async function withCurrentStages(db: Queryable, jobs: readonly JobRecord[]): Promise<JobListItem[]> {
  const rows = await findCurrentStages(
    db,
    jobs.map((job) => ({ jobId: job.jobId, stage: job.stage })),
  );
  const byJob = new Map(rows.map((row) => [row.job_id, toStageProgress(row)]));
  return jobs.map((job) => {
    const stage = byJob.get(job.jobId);
    if (!stage) return { ...job, progress: null };
    const { stage: number, name, status, total, completed, failed, signal } = stage;
    return { ...job, progress: { stage: number, name, status, total, completed, failed, ...(signal === undefined ? {} : { signal }) } };
  });
}
