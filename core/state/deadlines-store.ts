import type { JobStatus } from '../../models';
import type { Queryable } from '../db/pool';

/**
 * Deadlines live on the job row (012_deadlines.sql): `deadline_at` for the whole job, set at
 * submission, and `stage_deadline_at` for its current stage, set when the stage starts. Claims
 * check them in their own statements (tasks-store, remote-tasks-store); this store starts stage
 * clocks, restarts them for an operator retry, and finds the jobs that ran out of time.
 */

/** Starts the stage's clock, once: a stage that already has one (resumed, redelivered) keeps it. */
export async function startStageDeadline(db: Queryable, jobId: string, stage: number, timeoutSeconds: number): Promise<void> {
  await db.query({
    name: 'cm_start_stage_deadline',
    text: `UPDATE coremachine.jobs SET stage_deadline_at = now() + make_interval(secs => $3::int)
           WHERE job_id = $1 AND stage = $2 AND stage_deadline_at IS NULL`,
    values: [jobId, stage, timeoutSeconds],
  });
}

/**
 * An operator retry runs the failed stage again: the job gets a fresh deadline of its own length
 * and the stage a fresh one of the stage's (or none), else a timed-out job could never be retried.
 */
export async function restartDeadlines(db: Queryable, jobId: string, stageTimeoutSeconds: number | undefined): Promise<void> {
  await db.query({
    name: 'cm_restart_deadlines',
    text: `UPDATE coremachine.jobs SET
             deadline_at = now() + make_interval(secs => timeout_seconds),
             stage_deadline_at = now() + make_interval(secs => $2::int)
           WHERE job_id = $1`,
    values: [jobId, stageTimeoutSeconds ?? null],
  });
}

/** A job past a deadline, locked, with what its Timeout error reports. */
export interface OverdueJob {
  job_id: string;
  job_type: string;
  status: JobStatus;
  stage: number;
  /** Whose deadline passed first: the whole job's or the current stage's. */
  scope: 'job' | 'stage';
  deadline: Date;
  /** How long that clock has run: since submission (job) or since the stage started (stage). */
  elapsed_ms: number;
}

/**
 * Locks up to `limit` jobs that are still running, queued or paused past a deadline, earliest
 * first (the jobs_deadline_idx expression index). SKIP LOCKED: concurrent janitors take disjoint
 * jobs and never wait, and a job another transaction holds is left for the next pass. `jobIds`
 * narrows it to jobs a claim found overdue.
 */
export async function lockOverdueJobs(db: Queryable, limit: number, jobIds: readonly string[] | null = null): Promise<OverdueJob[]> {
  const result = await db.query<OverdueJob>({
    name: 'cm_lock_overdue_jobs',
    text: `SELECT j.job_id, j.job_type, j.status, j.stage,
                  CASE WHEN j.deadline_at IS NOT NULL AND (j.stage_deadline_at IS NULL OR j.deadline_at <= j.stage_deadline_at) THEN 'job' ELSE 'stage' END AS scope,
                  LEAST(j.deadline_at, j.stage_deadline_at) AS deadline,
                  round(extract(epoch FROM now() - CASE
                    WHEN j.deadline_at IS NOT NULL AND (j.stage_deadline_at IS NULL OR j.deadline_at <= j.stage_deadline_at) THEN j.created_at
                    ELSE COALESCE((SELECT s.started_at FROM coremachine.stages s WHERE s.job_id = j.job_id AND s.stage = j.stage), j.created_at)
                  END) * 1000)::bigint::float8 AS elapsed_ms
             FROM coremachine.jobs j
            WHERE j.status IN ('QUEUED', 'PROCESSING', 'PAUSED')
              AND LEAST(j.deadline_at, j.stage_deadline_at) <= now()
              AND ($2::text[] IS NULL OR j.job_id = ANY($2::text[]))
            ORDER BY LEAST(j.deadline_at, j.stage_deadline_at), j.job_id
            LIMIT $1
            FOR UPDATE OF j SKIP LOCKED`,
    values: [limit, jobIds],
  });
  return result.rows;
}
