import { ENDED_JOB_STATUSES } from '../../models';
import type { Queryable } from '../db/pool';

/**
 * Jobs that may be deleted: the ended ones. FAILED is among them although an operator may retry
 * it: retrying is a decision to make within the retention window (a retry clears finished_at,
 * which restarts the clock), and a FAILED job kept forever is exactly the unbounded growth
 * retention exists to stop.
 */
export const DELETABLE_JOB_STATUSES = ENDED_JOB_STATUSES;

// Spelled out in the SQL (not a parameter) so the planner can use the partial index
// jobs_finished_idx, whose predicate is this same list (migration 006).
const DELETABLE_SQL = DELETABLE_JOB_STATUSES.map((status) => `'${status}'`).join(',');

export interface PurgeCounts {
  jobs: number;
  stages: number;
  tasks: number;
  events: number;
  deadLetters: number;
  outbox: number;
  /** Log lines of the jobs' tasks (ctx.log); their count rows go with them, uncounted. */
  taskLogs: number;
}

export const NO_PURGE: PurgeCounts = { jobs: 0, stages: 0, tasks: 0, events: 0, deadLetters: 0, outbox: 0, taskLogs: 0 };

export function addCounts(a: PurgeCounts, b: PurgeCounts): PurgeCounts {
  return {
    jobs: a.jobs + b.jobs,
    stages: a.stages + b.stages,
    tasks: a.tasks + b.tasks,
    events: a.events + b.events,
    deadLetters: a.deadLetters + b.deadLetters,
    outbox: a.outbox + b.outbox,
    taskLogs: a.taskLogs + b.taskLogs,
  };
}

/**
 * Locks up to `maxJobs` deletable jobs that finished more than `olderThanDays` ago by the
 * database's clock (the clock that wrote finished_at), oldest first, skipping any
 * row another transaction holds (a sweep never waits for the engine, nor for another sweep). Jobs
 * are taken while their tasks and task log lines (rows the batch deletes too: up to 10,000 a job)
 * add up to at most `maxTasks` — always at least one job, so a single very large job is still
 * deleted, alone.
 */
export async function lockExpiredJobs(db: Queryable, olderThanDays: number, maxJobs: number, maxTasks: number): Promise<string[]> {
  const result = await db.query<{ job_id: string }>({
    name: 'cm_retention_lock_expired_jobs',
    text: `WITH candidates AS MATERIALIZED (
             SELECT j.job_id, j.finished_at FROM coremachine.jobs j
              WHERE j.status IN (${DELETABLE_SQL}) AND j.finished_at < now() - make_interval(days => $1::int)
              ORDER BY j.finished_at, j.job_id LIMIT $2 FOR UPDATE SKIP LOCKED),
           sized AS (
             SELECT c.job_id, sum(COALESCE(s.tasks, 0) + COALESCE(l.lines, 0)) OVER (ORDER BY c.finished_at, c.job_id)
                              - COALESCE(s.tasks, 0) - COALESCE(l.lines, 0) AS before
               FROM candidates c
               LEFT JOIN LATERAL (SELECT sum(total) AS tasks FROM coremachine.stages WHERE job_id = c.job_id) s ON true
               LEFT JOIN LATERAL (SELECT sum(lines) AS lines FROM coremachine.job_log_counts WHERE job_id = c.job_id) l ON true)
           SELECT job_id FROM sized WHERE before < $3`,
    values: [olderThanDays, maxJobs, maxTasks],
  });
  return result.rows.map((row) => row.job_id);
}

/**
 * Deletes the jobs and every row that belongs to them, children first. Call it in the
 * transaction that locked the jobs. Deletes write no events: the event triggers fire on INSERT
 * and UPDATE only, so a purge cannot flood the trail it is emptying.
 */
export async function deleteJobsAndRows(db: Queryable, jobIds: readonly string[]): Promise<PurgeCounts> {
  if (jobIds.length === 0) return NO_PURGE;
  const ids = [...jobIds];
  const run = async (name: string, text: string) => (await db.query({ name, text, values: [ids] })).rowCount ?? 0;
  // Tasks before stages before jobs: the foreign keys would cascade anyway, but explicit
  // set-based deletes are counted and leave the cascade nothing to do row by row.
  const tasks = await run('cm_retention_delete_tasks', 'DELETE FROM coremachine.tasks WHERE job_id = ANY($1::text[])');
  const stages = await run('cm_retention_delete_stages', 'DELETE FROM coremachine.stages WHERE job_id = ANY($1::text[])');
  const events = await run('cm_retention_delete_events', 'DELETE FROM coremachine.events WHERE job_id = ANY($1::text[])');
  const deadLetters = await run('cm_retention_delete_dead_letters', 'DELETE FROM coremachine.dead_letters WHERE job_id = ANY($1::text[])');
  const outbox = await run('cm_retention_delete_outbox', 'DELETE FROM coremachine.outbox WHERE job_id = ANY($1::text[])');
  const taskLogs = await run('cm_retention_delete_task_logs', 'DELETE FROM coremachine.task_logs WHERE job_id = ANY($1::text[])');
  await run('cm_retention_delete_task_log_counts', 'DELETE FROM coremachine.task_log_counts WHERE job_id = ANY($1::text[])');
  await run('cm_retention_delete_job_log_counts', 'DELETE FROM coremachine.job_log_counts WHERE job_id = ANY($1::text[])');
  const jobs = await run('cm_retention_delete_jobs', 'DELETE FROM coremachine.jobs WHERE job_id = ANY($1::text[])');
  return { jobs, stages, tasks, events, deadLetters, outbox, taskLogs };
}
