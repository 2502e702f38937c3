import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { isSignalStage, type JobStatus } from '../models';
import type { Outbox, OutboxIntent } from './engine/outbox';
import { afterCommit, NOTHING_AFTER_COMMIT, type AfterCommit, type EngineContext } from './engine/after-commit';
import { commit } from './engine/commit';
import { definitionOf, waitingForVersion } from './engine/versions';
import { checkStage } from './engine/stage-check';
import { DEFAULT_RETENTION, NOTHING_PURGED, purgeExpiredJobs, type RetentionOptions, type RetentionReport } from './engine/retention';
import { recordTaskOutcomes } from './engine/task-outcomes';
import { failOverdueJobs, type TimedOut } from './engine/deadlines';
import type { UnitOfWork } from './engine/unit-of-work';
import { LeaseExpiredError } from './errors';
import type { Logger } from './logger';
import { NO_ORPHAN_SWEEP, sweepOrphanPayloads, type OrphanSweepReport } from './payloads/orphan-sweep';
import type { Payloads } from './payloads/payloads';
import {
  jobsWithExpiredLeases,
  listStallCandidates,
  lockExpiredTasks,
  nudgeStalledJob,
  recordJanitorRun,
  type ExpiredTask,
  type StallCandidate,
} from './state/janitor-store';
import { findStage } from './state/stages-store';
import { NOTHING_RECOUNTED, pruneIdleRateBuckets } from './state/limits-store';
import { recountSlots } from './engine/limits';
import { pruneStaleWorkers } from './state/workers-store';
import { lockJobs } from './state/jobs-store';
import { requeueLostLeases, type TaskOutcome } from './state/tasks-store';
import type { ScheduleSweepReport } from './schedules/schedules';
import type { JanitorOptions } from './janitor-options';

export { DEFAULT_JANITOR_OPTIONS, type JanitorOptions } from './janitor-options';

/** A rate bucket idle this long is full again (models/task-limits.ts: MIN_RATE_PER_SECOND). */
const IDLE_RATE_BUCKET_SECONDS = 3600;

export interface StalledJob {
  jobId: string;
  status: JobStatus;
  stage: number;
  idleSeconds: number;
  reason: string;
  action: 'resent-job-message' | 'resent-task-messages' | 'advanced' | 'failed' | 'none';
}

export interface SweepReport {
  requeuedTasks: number;
  failedTasks: number;
  /** Jobs failed with a Timeout because they ran past a deadline. */
  timedOutJobs: number;
  outboxSent: number;
  resentJobs: number;
  stalled: StalledJob[];
  schedules?: ScheduleSweepReport;
  /** What retention deleted in this sweep. */
  purged: RetentionReport;
  /** Rate-limit buckets idle long enough to be full again, deleted (migration 011). */
  prunedRateBuckets: number;
  /** Concurrency slots still counted for tasks no longer PROCESSING, freed (029_limit_slot_tallies.sql; expected 0). */
  freedStaleSlots: number;
  /** Running tasks no slot tally counted, counted again (expected 0). */
  restoredSlots: number;
  /** Workers not heard from for the retention window (JanitorOptions.workerRetentionMs), deleted (migration 022). */
  prunedWorkers: number;
  /** The payload store's orphan sweep (core/payloads/orphan-sweep.ts); absent without a store. */
  orphanPayloads?: OrphanSweepReport;
}

/** What a sweep works with: every state change goes through the unit of work, so its transitions are reported. */
export interface JanitorDeps {
  pool: pg.Pool;
  logger: Logger;
  outbox: Outbox;
  unitOfWork: UnitOfWork;
  /** The payload store: retention deletes the blobs of purged jobs, and the orphan sweep what no row references. */
  payloads?: Payloads;
}

/**
 * The sweep that makes "nothing stuck" true after crashes: jobs past a deadline fail with a Timeout
 * (first, so their lost leases are not retried), expired leases are retried or failed,
 * undispatched outbox rows are sent, and jobs that made no progress are explained and, where a
 * message was lost, given it again. Row locks with SKIP LOCKED make concurrent sweeps safe.
 */
export async function sweep(deps: JanitorDeps, options: JanitorOptions): Promise<SweepReport> {
  const { pool, outbox, unitOfWork } = deps;
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
  const timedOut = await attempt(() => sweepDeadlines(unitOfWork, options.batchSize), []);
  const leases = await attempt(() => expireLeases(unitOfWork, options.batchSize, options.maxLeaseLosses), { requeuedTasks: 0, failedTasks: 0 });
  const outboxSent = await attempt(() => outbox.sweep(options.outboxAgeMs, options.batchSize), 0);
  const stalled = await attempt(() => examineStalledJobs(pool, unitOfWork, options), [] as StalledJob[]);
  const schedules = options.schedules ? await attempt(options.schedules, undefined) : undefined;
  const retention: RetentionOptions = { ...DEFAULT_RETENTION, ...options.retention, retentionDays: options.retentionDays ?? 0 };
  const payloads = deps.payloads?.store ? deps.payloads : undefined;
  const purged = await attempt(() => purgeExpiredJobs(unitOfWork, retention, payloads), NOTHING_PURGED);
  const orphanPayloads = payloads ? await attempt(() => sweepOrphanPayloads(pool, payloads, options.batchSize), NO_ORPHAN_SWEEP) : undefined;
  const prunedRateBuckets = await attempt(
    () => commit(unitOfWork, async ({ client }) => ({ value: await pruneIdleRateBuckets(client, IDLE_RATE_BUCKET_SECONDS, options.batchSize) })),
    0,
  );
  const slots = await attempt(() => recountSlots(unitOfWork, options.batchSize), NOTHING_RECOUNTED);
  const prunedWorkers = await attempt(
    () => commit(unitOfWork, async ({ client }) => ({ value: await pruneStaleWorkers(client, options.workerRetentionMs / 1000, options.batchSize) })),
    0,
  );
  const report: SweepReport = {
    ...leases,
    timedOutJobs: timedOut.length,
    outboxSent,
    resentJobs: stalled.filter((s) => s.action === 'resent-job-message').length,
    stalled,
    purged,
    prunedRateBuckets,
    freedStaleSlots: slots.freed,
    restoredSlots: slots.restored,
    prunedWorkers,
    ...(schedules ? { schedules } : {}),
    ...(orphanPayloads ? { orphanPayloads } : {}),
  };
  await attempt(() => commit(unitOfWork, async ({ client }) => ({ value: await recordJanitorRun(client, { startedAt, ...report }) })), undefined);
  if (
    report.requeuedTasks +
      report.failedTasks +
      report.timedOutJobs +
      report.outboxSent +
      report.stalled.length +
      report.freedStaleSlots +
      report.restoredSlots >
    0
  ) {
    deps.logger.warn('janitor sweep found work', { ...report, stalled: report.stalled.length });
    for (const job of report.stalled) deps.logger.warn('job made no progress', { ...job });
  }
  if (purged.jobs > 0) deps.logger.info('janitor deleted finished jobs past retention', { retentionDays: retention.retentionDays, ...purged });
  if (purged.blobsLeft > 0) {
    deps.logger.warn("deleting the purged jobs' payload blobs failed; the orphan sweep deletes them later", {
      blobsLeft: purged.blobsLeft,
      error: purged.blobError,
    });
  }
  if (orphanPayloads && orphanPayloads.deleted > 0) deps.logger.info('janitor deleted orphaned payload blobs', { ...orphanPayloads });
  if (failures.length > 0) throw new AggregateError(failures, `janitor sweep: ${failures.length} part(s) failed; the next sweep retries them`);
  return report;
}

/**
 * Expired leases: their host died or stopped renewing, which is not the handler failing. Each is
 * re-queued at the same attempt with the loss counted (a message is sent again, under a new id so
 * Service Bus duplicate detection keeps it); the loss that reaches `maxLeaseLosses` fails the task
 * with LeaseExpired, through the same settling as any failure.
 */
/** One bounded batch of overdue jobs, failed with their Timeout in one unit of work. */
async function sweepDeadlines(unitOfWork: UnitOfWork, limit: number): Promise<TimedOut['jobs']> {
  return commit(unitOfWork, async ({ client, context }) => {
    const timedOut = await failOverdueJobs(client, context, limit);
    return { value: timedOut.jobs, ...timedOut.after };
  });
}

async function expireLeases(unitOfWork: UnitOfWork, limit: number, maxLeaseLosses: number): Promise<{ requeuedTasks: number; failedTasks: number }> {
  return commit(unitOfWork, async ({ client }) => {
    // Lock order job → tasks: find the expired tasks' jobs first, lock them, then the tasks.
    const jobIds = await jobsWithExpiredLeases(client, limit);
    await lockJobs(client, jobIds);
    const expired = await lockExpiredTasks(client, jobIds, limit);
    const lastLoss = (row: ExpiredTask) => row.lease_losses + 1 >= maxLeaseLosses;
    const failures: TaskOutcome[] = expired.filter(lastLoss).map((row) => {
      const error = new LeaseExpiredError(row.task_id, row.attempt, row.worker_id, row.lease_losses + 1);
      return { taskId: row.task_id, jobId: row.job_id, claimId: row.claim_id, error: error.toShape({ stage: row.stage, taskId: row.task_id }) };
    });
    const lost = expired
      .filter((row) => !lastLoss(row))
      .map((row) => ({
        taskId: row.task_id,
        claimId: row.claim_id,
        error: {
          type: 'HostLostError',
          message: `lease on attempt ${row.attempt}${row.worker_id ? ` (worker ${row.worker_id})` : ''} expired: its host was lost or stopped renewing; re-queued (loss ${row.lease_losses + 1} of at most ${maxLeaseLosses - 1} before LeaseExpired)`,
          stage: row.stage,
          taskId: row.task_id,
          leaseLosses: row.lease_losses + 1,
        },
      }));
    const requeued = await requeueLostLeases(client, lost);
    // Remote tasks are claimed by polling; the others need a message, under an id of their own.
    const intents: OutboxIntent[] = requeued
      .filter((row) => !row.remote)
      .map((row) => ({
        kind: 'task',
        jobId: row.job_id,
        message: {
          taskId: row.task_id,
          jobId: row.job_id,
          stage: row.stage,
          taskType: row.task_type,
          attempt: row.attempt + 1,
          resend: `lost${row.lease_losses}`,
        },
      }));
    const committed = await recordTaskOutcomes(client, failures);
    return { value: { requeuedTasks: requeued.length, failedTasks: committed.settled.size }, ...afterCommit({ intents }, committed.after) };
  });
}

async function examineStalledJobs(pool: pg.Pool, unitOfWork: UnitOfWork, options: JanitorOptions): Promise<StalledJob[]> {
  const candidates = await listStallCandidates(pool, options.stallAfterMs, options.batchSize);
  const stalled: StalledJob[] = [];
  const backlog = options.backlog?.();
  for (const candidate of candidates) {
    // One short unit of work per job: the engine is never kept waiting behind a sweep.
    const found = await commit(unitOfWork, async ({ client, context }) => {
      if (!(await nudgeStalledJob(client, candidate))) return { value: undefined };
      const { job, after } = await explain(client, context, candidate, backlog);
      return { value: job, ...after };
    });
    if (found) stalled.push(found);
  }
  return stalled;
}

/** Why a job made no progress, and what (if anything) gives it back what it lost. */
async function explain(
  client: pg.PoolClient,
  context: EngineContext,
  c: StallCandidate,
  backlog: number | undefined,
): Promise<{ job: StalledJob; after: AfterCommit }> {
  const base = { jobId: c.job_id, status: c.status, stage: c.stage, idleSeconds: c.idle_seconds };
  const resend = randomUUID().slice(0, 8);
  // A job whose version this deployment lacks is left as it is: resending its messages would only
  // make them wait again. It goes on once the version is deployed again (core/engine/versions.ts).
  const missing = waitingForVersion(context.registry, c);
  if (missing) return { job: { ...base, reason: missing, action: 'none' }, after: NOTHING_AFTER_COMMIT };
  if (c.pending_outbox > 0)
    return { job: { ...base, reason: `${c.pending_outbox} message(s) waiting in the outbox`, action: 'none' }, after: NOTHING_AFTER_COMMIT };
  // A QUEUED job has no current stage row to read; a PROCESSING one is judged by it below.
  const stage = c.status === 'PROCESSING' ? await findStage(client, c.job_id, c.stage) : null;
  // A stage check lost with the process that committed the result that tipped the stage over
  // its tolerance: whatever is still queued, the job fails now.
  if (stage && stage.status === 'PROCESSING' && stage.failed > stage.max_failures) {
    const after = await checkStage(client, context, { jobId: c.job_id, stage: c.stage });
    return { job: { ...base, reason: `stage ${c.stage} is past its failure tolerance but the job did not fail`, action: 'failed' }, after };
  }
  const waiting = c.status === 'QUEUED' || c.queued > 0;
  if (waiting && backlog !== undefined && backlog > 0) {
    return { job: { ...base, reason: `waiting behind ${backlog} queued message(s)`, action: 'none' }, after: NOTHING_AFTER_COMMIT };
  }
  if (c.status === 'QUEUED') {
    return {
      job: { ...base, reason: `QUEUED at stage ${c.stage} with no job message pending`, action: 'resent-job-message' },
      after: afterCommit({ intents: [{ kind: 'job', jobId: c.job_id, message: { jobId: c.job_id, jobType: c.job_type, stage: c.stage, resend } }] }),
    };
  }
  // Task creation was cut short (its job message lost with a crashed process): the message resumes it.
  if (stage?.creating) {
    return {
      job: { ...base, reason: `stage ${c.stage} has ${stage.created} task(s) created and more to create`, action: 'resent-job-message' },
      after: afterCommit({ intents: [{ kind: 'job', jobId: c.job_id, message: { jobId: c.job_id, jobType: c.job_type, stage: c.stage, resend } }] }),
    };
  }
  if (stage && stage.completed + stage.failed >= stage.total) {
    return {
      job: { ...base, reason: `stage ${c.stage} finished but the job did not advance`, action: 'advanced' },
      after: await checkStage(client, context, { jobId: c.job_id, stage: c.stage }),
    };
  }
  if (c.queued > 0) {
    const stageDefinition = definitionOf(context.registry, c)?.stages[c.stage - 1];
    const taskType = stageDefinition && !isSignalStage(stageDefinition) ? stageDefinition.task.type : '';
    return {
      job: { ...base, reason: `${c.queued} task(s) QUEUED with no progress for ${c.idle_seconds} s`, action: 'resent-task-messages' },
      after: afterCommit({ intents: [{ kind: 'stage_tasks', jobId: c.job_id, stage: c.stage, taskType, resend }] }),
    };
  }
  if (c.remote_queued > 0)
    return { job: { ...base, reason: `${c.remote_queued} remote task(s) waiting for a worker to claim them`, action: 'none' }, after: NOTHING_AFTER_COMMIT };
  if (c.waiting_retry > 0)
    return { job: { ...base, reason: `${c.waiting_retry} task(s) waiting for a scheduled retry`, action: 'none' }, after: NOTHING_AFTER_COMMIT };
  return { job: { ...base, reason: `${c.processing} task(s) running under live leases`, action: 'none' }, after: NOTHING_AFTER_COMMIT };
}
