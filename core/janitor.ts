import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { ErrorShape, JobStatus } from '../models';
import { withTransaction } from './db/pool';
import type { Outbox, OutboxIntent } from './engine/outbox';
import { advanceStage, type AdvanceDeps } from './engine/stage-advance';
import { DEFAULT_RETENTION, NOTHING_PURGED, purgeExpiredJobs, type RetentionOptions, type RetentionReport } from './engine/retention';
import { commitOutcomes, nextAttemptAt } from './engine/task-batch';
import { LeaseExpiredError } from './errors';
import { findStage } from './state/stages-store';
import { lockJobs } from './state/jobs-store';
import type { TaskOutcome } from './state/tasks-store';
import type { ScheduleSweepReport } from './schedules/schedules';

export interface JanitorOptions {
  /** A job with no event for this long is examined and explained. */
  stallAfterMs: number;
  /** Outbox rows older than this were not dispatched by their writer. */
  outboxAgeMs: number;
  batchSize: number;
  /** Messages still queued, if the transport can tell: no re-send while the backlog drains. */
  backlog?: () => number | undefined;
  /** Fires due schedule ticks; runs on the janitor's cadence (one call, its own failures collected). */
  schedules?: () => Promise<ScheduleSweepReport>;
  /** Finished jobs older than this many days are deleted with all their rows; 0 or unset keeps everything. */
  retentionDays?: number;
  /** Batch bounds of the retention step (DEFAULT_RETENTION). */
  retention?: Partial<Omit<RetentionOptions, 'retentionDays'>>;
}

export interface StalledJob {
  jobId: string;
  status: JobStatus;
  stage: number;
  idleSeconds: number;
  reason: string;
  action: 'resent-job-message' | 'resent-task-messages' | 'advanced' | 'none';
}

export interface SweepReport {
  requeuedTasks: number;
  failedTasks: number;
  /** Expired tasks of jobs that had already stopped. */
  cancelledTasks: number;
  outboxSent: number;
  resentJobs: number;
  stalled: StalledJob[];
  schedules?: ScheduleSweepReport;
  /** What retention deleted in this sweep. */
  purged: RetentionReport;
}

/**
 * The sweep that makes "nothing stuck" true after crashes: expired leases are retried or failed,
 * undispatched outbox rows are sent, and jobs that made no progress are explained and, where a
 * message was lost, given it again. Row locks with SKIP LOCKED make concurrent sweeps safe.
 */
export async function sweep(pool: pg.Pool, deps: AdvanceDeps, outbox: Outbox, options: JanitorOptions): Promise<SweepReport> {
  const startedAt = new Date();
  // Each part runs even if another fails (a dead connection, a failing send): the failures are
  // collected, the run is recorded, and then they are thrown together.
  const failures: unknown[] = [];
  const attempt = async <T>(part: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await part();
    } catch (error) {
      failures.push(error);
      return fallback;
    }
  };
  const leases = await attempt(() => expireLeases(pool, deps, outbox, options.batchSize), { requeuedTasks: 0, failedTasks: 0, cancelledTasks: 0 });
  const outboxSent = await attempt(() => outbox.sweep(options.outboxAgeMs, options.batchSize), 0);
  const stalled = await attempt(() => examineStalledJobs(pool, deps, outbox, options), [] as StalledJob[]);
  const schedules = options.schedules ? await attempt(options.schedules, undefined) : undefined;
  const retention: RetentionOptions = { ...DEFAULT_RETENTION, ...options.retention, retentionDays: options.retentionDays ?? 0 };
  const purged = await attempt(() => purgeExpiredJobs(pool, retention), NOTHING_PURGED);
  const report: SweepReport = { ...leases, outboxSent, resentJobs: stalled.filter((s) => s.action === 'resent-job-message').length, stalled, purged, ...(schedules ? { schedules } : {}) };
  await attempt(
    () =>
      pool.query(
        `INSERT INTO coremachine.janitor_runs (started_at, requeued_tasks, failed_tasks, outbox_sent, resent_jobs, stalled) VALUES ($1, $2, $3, $4, $5, $6)`,
        [startedAt, report.requeuedTasks, report.failedTasks, report.outboxSent, report.resentJobs, JSON.stringify(report.stalled)],
      ),
    undefined,
  );
  if (report.requeuedTasks + report.failedTasks + report.cancelledTasks + report.outboxSent + report.stalled.length > 0) {
    deps.logger.warn('janitor sweep found work', { ...report, stalled: report.stalled.length });
    for (const job of report.stalled) deps.logger.warn('job made no progress', { ...job });
  }
  if (purged.jobs > 0) deps.logger.info('janitor deleted finished jobs past retention', { retentionDays: retention.retentionDays, ...purged });
  if (failures.length > 0) throw new AggregateError(failures, `janitor sweep: ${failures.length} part(s) failed; the next sweep retries them`);
  return report;
}

async function expireLeases(pool: pg.Pool, deps: AdvanceDeps, outbox: Outbox, limit: number): Promise<{ requeuedTasks: number; failedTasks: number; cancelledTasks: number }> {
  // Under a job that stopped (FAILED, CANCELLED), an expired task has nothing to retry for. Its
  // own transaction: it never waits (SKIP LOCKED), so it holds no lock while waiting for another.
  const stopped = await pool.query(
    `WITH expired AS MATERIALIZED (
       SELECT t.task_id FROM coremachine.tasks t JOIN coremachine.jobs j ON j.job_id = t.job_id
        WHERE t.status = 'PROCESSING' AND t.lease_expires_at < now() AND j.status NOT IN ('QUEUED','PROCESSING','PAUSED')
        ORDER BY t.task_id LIMIT $1 FOR UPDATE OF t SKIP LOCKED)
     UPDATE coremachine.tasks t SET status = 'CANCELLED', finished_at = GREATEST(now(), t.started_at), claim_id = NULL, lease_expires_at = NULL
       FROM expired WHERE t.task_id = expired.task_id`,
    [limit],
  );
  const cancelled = stopped.rowCount ?? 0;
  const { outcomes, recorded } = await withTransaction(pool, async (client) => {
    // Lock order job → tasks: find the expired tasks' jobs first, lock them, then the tasks.
    const due = await client.query<{ job_id: string }>(
      `SELECT DISTINCT job_id FROM coremachine.tasks WHERE status = 'PROCESSING' AND lease_expires_at < now() LIMIT $1`,
      [limit],
    );
    await lockJobs(client, due.rows.map((row) => row.job_id));
    const expired = await client.query<{ task_id: string; job_id: string; claim_id: string; task_type: string; attempt: number; stage: number; worker_id: string | null }>(
      `SELECT task_id, job_id, claim_id, task_type, attempt, stage, worker_id FROM coremachine.tasks
        WHERE job_id = ANY($2::text[]) AND status = 'PROCESSING' AND lease_expires_at < now()
        ORDER BY task_id LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [limit, due.rows.map((row) => row.job_id)],
    );
    const outcomes: TaskOutcome[] = expired.rows.map((row) => {
      const error = new LeaseExpiredError(row.task_id, row.attempt, row.worker_id);
      const definition = deps.registry.hasTask(row.task_type) ? deps.registry.task(row.task_type) : undefined;
      const retryAt = nextAttemptAt(definition, row.attempt, error);
      const shape: ErrorShape = { type: error.type, message: error.message, stage: row.stage, taskId: row.task_id };
      return { taskId: row.task_id, jobId: row.job_id, claimId: row.claim_id, error: shape, ...(retryAt ? { retryAt } : {}) };
    });
    const committed = await commitOutcomes(client, deps, outcomes);
    return { outcomes, recorded: await outbox.record(client, committed.intents) };
  });
  await outbox.dispatch(recorded);
  const requeuedTasks = outcomes.filter((o) => o.retryAt).length;
  return { requeuedTasks, failedTasks: outcomes.length - requeuedTasks, cancelledTasks: cancelled };
}

interface Candidate {
  job_id: string;
  job_type: string;
  status: JobStatus;
  stage: number;
  idle_seconds: number;
  pending_outbox: number;
  queued: number;
  remote_queued: number;
  processing: number;
  waiting_retry: number;
}

async function examineStalledJobs(pool: pg.Pool, deps: AdvanceDeps, outbox: Outbox, options: JanitorOptions): Promise<StalledJob[]> {
  // Idle = no event and no janitor visit within the window. Reading candidates takes no locks.
  const candidates = await pool.query<Candidate>(
    `SELECT j.job_id, j.job_type, j.status, j.stage,
            extract(epoch FROM now() - last.at)::int AS idle_seconds,
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
      GROUP BY j.job_id, last.at
      ORDER BY last.at LIMIT $2`,
    [options.stallAfterMs, options.batchSize],
  );
  const stalled: StalledJob[] = [];
  const backlog = options.backlog?.();
  for (const candidate of candidates.rows) {
    // One short transaction per job: the engine is never kept waiting behind a sweep.
    const { found, recorded } = await withTransaction(pool, async (client) => {
      const locked = await client.query(
        `UPDATE coremachine.jobs SET nudged_at = now() WHERE job_id = $1 AND status = $2 AND stage = $3
           AND job_id IN (SELECT job_id FROM coremachine.jobs WHERE job_id = $1 FOR UPDATE SKIP LOCKED)`,
        [candidate.job_id, candidate.status, candidate.stage],
      );
      // Being worked on right now (locked) or moved on since: not stalled.
      if (locked.rowCount === 0) return { found: undefined, recorded: [] };
      const { job, intents } = await explain(client, deps, candidate, backlog);
      return { found: job, recorded: await outbox.record(client, intents) };
    });
    await outbox.dispatch(recorded);
    if (found) stalled.push(found);
  }
  return stalled;
}

/** Why a job made no progress, and what (if anything) gives it back what it lost. */
async function explain(client: pg.PoolClient, deps: AdvanceDeps, c: Candidate, backlog: number | undefined): Promise<{ job: StalledJob; intents: OutboxIntent[] }> {
  const base = { jobId: c.job_id, status: c.status, stage: c.stage, idleSeconds: c.idle_seconds };
  const resend = randomUUID().slice(0, 8);
  if (c.pending_outbox > 0) return { job: { ...base, reason: `${c.pending_outbox} message(s) waiting in the outbox`, action: 'none' }, intents: [] };
  const waiting = c.status === 'QUEUED' || c.queued > 0;
  if (waiting && backlog !== undefined && backlog > 0) {
    return { job: { ...base, reason: `waiting behind ${backlog} queued message(s)`, action: 'none' }, intents: [] };
  }
  if (c.status === 'QUEUED') {
    return {
      job: { ...base, reason: `QUEUED at stage ${c.stage} with no job message pending`, action: 'resent-job-message' },
      intents: [{ kind: 'job', jobId: c.job_id, message: { jobId: c.job_id, jobType: c.job_type, stage: c.stage, resend } }],
    };
  }
  const stage = await findStage(client, c.job_id, c.stage);
  // Task creation was cut short (its job message lost with a crashed process): the message resumes it.
  if (stage?.creating) {
    return {
      job: { ...base, reason: `stage ${c.stage} has ${stage.created} task(s) created and more to create`, action: 'resent-job-message' },
      intents: [{ kind: 'job', jobId: c.job_id, message: { jobId: c.job_id, jobType: c.job_type, stage: c.stage, resend } }],
    };
  }
  if (stage && stage.completed + stage.failed >= stage.total) {
    return { job: { ...base, reason: `stage ${c.stage} finished but the job did not advance`, action: 'advanced' }, intents: await advanceStage(client, deps, stage) };
  }
  if (c.queued > 0) {
    const taskType = deps.registry.hasJob(c.job_type) ? (deps.registry.job(c.job_type).stages[c.stage - 1]?.task.type ?? '') : '';
    return {
      job: { ...base, reason: `${c.queued} task(s) QUEUED with no progress for ${c.idle_seconds} s`, action: 'resent-task-messages' },
      intents: [{ kind: 'stage_tasks', jobId: c.job_id, stage: c.stage, taskType, resend }],
    };
  }
  if (c.remote_queued > 0) return { job: { ...base, reason: `${c.remote_queued} remote task(s) waiting for a worker to claim them`, action: 'none' }, intents: [] };
  if (c.waiting_retry > 0) return { job: { ...base, reason: `${c.waiting_retry} task(s) waiting for a scheduled retry`, action: 'none' }, intents: [] };
  return { job: { ...base, reason: `${c.processing} task(s) running under live leases`, action: 'none' }, intents: [] };
}
