import type { JobStatus } from '../../models';
import type { Queryable } from '../db/pool';
import type { TaskRow } from './rows';

/** What the janitor reads and writes: expired leases, jobs without progress, its own run log. */

/**
 * Jobs with a task whose lease expired (read without locks: lock order is job → tasks). Only a job
 * that has not stopped can have a running task (a stopping job cancels its open tasks), and only in
 * its current stage: those tasks are read through the (job_id, stage, task_index) index. There is no
 * index on lease_expires_at, so that claims and settles stay HOT updates (migration 015).
 */
export async function jobsWithExpiredLeases(db: Queryable, limit: number): Promise<string[]> {
  const result = await db.query<{ job_id: string }>({
    name: 'cm_janitor_jobs_with_expired_leases',
    text: `SELECT j.job_id FROM coremachine.jobs j
            WHERE j.status IN ('QUEUED','PROCESSING','PAUSED')
              AND EXISTS (SELECT 1 FROM coremachine.tasks t
                           WHERE t.job_id = j.job_id AND t.stage = j.stage AND t.status = 'PROCESSING' AND t.lease_expires_at < now())
            LIMIT $1`,
    values: [limit],
  });
  return result.rows.map((row) => row.job_id);
}

export type ExpiredTask = Pick<TaskRow, 'task_id' | 'job_id' | 'task_type' | 'attempt' | 'stage' | 'worker_id' | 'lease_losses' | 'remote'> & {
  claim_id: string;
};

/** The expired tasks of these (already locked) jobs, locked in task_id order. */
export async function lockExpiredTasks(db: Queryable, jobIds: readonly string[], limit: number): Promise<ExpiredTask[]> {
  const result = await db.query<ExpiredTask>({
    name: 'cm_janitor_lock_expired_tasks',
    text: `SELECT t.task_id, t.job_id, t.claim_id, t.task_type, t.attempt, t.stage, t.worker_id, t.lease_losses, t.remote
             FROM coremachine.tasks t JOIN coremachine.jobs j ON j.job_id = t.job_id AND j.stage = t.stage
            WHERE t.job_id = ANY($2::text[]) AND t.status = 'PROCESSING' AND t.lease_expires_at < now()
            ORDER BY t.task_id LIMIT $1 FOR UPDATE OF t SKIP LOCKED`,
    values: [limit, jobIds],
  });
  return result.rows;
}

/** A job with no event and no janitor visit for a while, with what its current stage's tasks are doing. */
export interface StallCandidate {
  job_id: string;
  job_type: string;
  job_version: number;
  status: JobStatus;
  stage: number;
  idle_seconds: number;
  pending_outbox: number;
  queued: number;
  remote_queued: number;
  processing: number;
  waiting_retry: number;
}

/**
 * Idle = no event, no task of the current stage started or finished, and no janitor visit within
 * the window (a first attempt that succeeds writes no event: its row's times are the progress).
 * Reading candidates takes no locks.
 */
export async function listStallCandidates(db: Queryable, stallAfterMs: number, limit: number): Promise<StallCandidate[]> {
  const result = await db.query<StallCandidate>({
    name: 'cm_janitor_stall_candidates',
    text: `SELECT j.job_id, j.job_type, j.job_version, j.status, j.stage,
                  extract(epoch FROM now() - GREATEST(last.at, max(t.started_at), max(t.finished_at)))::int AS idle_seconds,
                  (SELECT count(*) FROM coremachine.outbox o WHERE o.job_id = j.job_id)::int AS pending_outbox,
                  count(t.*) FILTER (WHERE t.status = 'QUEUED' AND NOT t.remote AND (t.retry_at IS NULL OR t.retry_at <= now()))::int AS queued,
                  count(t.*) FILTER (WHERE t.status = 'QUEUED' AND t.remote)::int AS remote_queued,
                  count(t.*) FILTER (WHERE t.status = 'PROCESSING')::int AS processing,
                  count(t.*) FILTER (WHERE t.status = 'QUEUED' AND t.retry_at > now())::int AS waiting_retry
             FROM coremachine.jobs j
             -- The newest event by id: one index lookup per job, not a scan of its whole trail.
             CROSS JOIN LATERAL (SELECT e.at FROM coremachine.events e WHERE e.job_id = j.job_id ORDER BY e.id DESC LIMIT 1) last
             LEFT JOIN coremachine.tasks t ON t.job_id = j.job_id AND t.stage = j.stage
            WHERE j.status IN ('QUEUED','PROCESSING')
              AND GREATEST(last.at, j.nudged_at) < now() - make_interval(secs => $1::float8 / 1000)
              -- A stage waiting for its signal (migration 013) is idle by design, not stalled.
              AND NOT EXISTS (SELECT 1 FROM coremachine.stages w WHERE w.job_id = j.job_id AND w.stage = j.stage
                                AND w.signal IS NOT NULL AND w.status = 'PROCESSING' AND w.completed = 0)
            GROUP BY j.job_id, last.at
           HAVING GREATEST(last.at, j.nudged_at, max(t.started_at), max(t.finished_at)) < now() - make_interval(secs => $1::float8 / 1000)
            ORDER BY GREATEST(last.at, max(t.started_at), max(t.finished_at)) LIMIT $2`,
    values: [stallAfterMs, limit],
  });
  return result.rows;
}

/**
 * Marks the visit and locks the job, if it is still as the candidate saw it and nobody else holds
 * it (being worked on right now, or moved on since: not stalled). False when it was not taken.
 */
export async function nudgeStalledJob(db: Queryable, candidate: Pick<StallCandidate, 'job_id' | 'status' | 'stage'>): Promise<boolean> {
  const result = await db.query({
    name: 'cm_janitor_nudge_job',
    text: `UPDATE coremachine.jobs SET nudged_at = now() WHERE job_id = $1 AND status = $2 AND stage = $3
             AND job_id IN (SELECT job_id FROM coremachine.jobs WHERE job_id = $1 FOR UPDATE SKIP LOCKED)`,
    values: [candidate.job_id, candidate.status, candidate.stage],
  });
  return (result.rowCount ?? 0) > 0;
}

export async function recordJanitorRun(
  db: Queryable,
  run: { startedAt: Date; requeuedTasks: number; failedTasks: number; outboxSent: number; resentJobs: number; stalled: unknown },
): Promise<void> {
  await db.query({
    name: 'cm_janitor_record_run',
    text: `INSERT INTO coremachine.janitor_runs (started_at, requeued_tasks, failed_tasks, outbox_sent, resent_jobs, stalled) VALUES ($1, $2, $3, $4, $5, $6)`,
    values: [run.startedAt, run.requeuedTasks, run.failedTasks, run.outboxSent, run.resentJobs, JSON.stringify(run.stalled)],
  });
}
