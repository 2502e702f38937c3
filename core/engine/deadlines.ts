import type { Queryable } from '../db/pool';
import { DeadlineExceededError } from '../errors';
import { restartDeadlines, startStageDeadline, lockOverdueJobs, type OverdueJob } from '../state/deadlines-store';
import { transitionJob } from '../state/jobs-store';
import type { JobRow } from '../state/rows';
import { finishStage } from '../state/stages-store';
import { cancelOpenTasks } from '../state/tasks-store';
import { assertTaskTransition } from '../state/transitions';
import type { AdvanceDeps } from './stage-advance';
import type { UnitOfWork } from './unit-of-work';

/**
 * Deadlines are enforced where work would otherwise start or continue, never by a timer per job:
 * the janitor's sweep (sweepDeadlines), every task claim (the claim statements skip overdue jobs
 * and the batch then fails them, failOverdueJobs) and every stage start (startStageClock).
 */

/** The jobs that timed out. Their handlers running in this process are aborted once the unit of work commits. */
export interface TimedOut {
  jobs: Array<{ jobId: string; reason: DeadlineExceededError }>;
}

/**
 * Fails the overdue jobs it can lock (all of them, or those of `jobIds`): job → FAILED with a
 * Timeout error, its queued and running tasks CANCELLED (a late result is fenced off by its
 * cleared claim), its stage FAILED. The job's FAILED event carries the error: the trail says why.
 */
export async function failOverdueJobs(db: Queryable, deps: AdvanceDeps, limit: number, jobIds: readonly string[] | null = null): Promise<TimedOut> {
  const timedOut: TimedOut = { jobs: [] };
  for (const job of await lockOverdueJobs(db, limit, jobIds)) {
    const reason = new DeadlineExceededError(job.scope, job.stage, job.deadline, job.elapsed_ms);
    await timeOut(db, deps, job, reason);
    timedOut.jobs.push({ jobId: job.job_id, reason });
  }
  return timedOut;
}

async function timeOut(db: Queryable, deps: AdvanceDeps, job: OverdueJob, reason: DeadlineExceededError): Promise<void> {
  const error = reason.toShape();
  const failed = await transitionJob(db, job.job_id, job.status, 'FAILED', { atStage: job.stage, error });
  if (!failed) throw new Error(`job ${job.job_id} changed under its row lock while timing out`);
  deps.events?.push({
    name: 'JobTransition',
    attributes: { jobId: job.job_id, jobType: job.job_type, from: job.status, to: 'FAILED', stage: job.stage, errorType: error.type },
    outcome: { error },
  });
  assertTaskTransition('*', 'QUEUED', 'CANCELLED');
  assertTaskTransition('*', 'PROCESSING', 'CANCELLED');
  const tasks = await cancelOpenTasks(db, job.job_id);
  await finishStage(db, job.job_id, job.stage, 'PROCESSING', 'FAILED');
  const running = tasks.filter((task) => task.was_running);
  for (const task of running) deps.abortAfterCommit?.push({ taskId: task.task_id, reason });
  deps.logger.error('job timed out', { jobId: job.job_id, stage: job.stage, from: job.status, scope: job.scope, deadline: error.deadline, elapsedMs: error.elapsedMs, cancelledTasks: tasks.length, runningTasks: running.length });
}

/** The janitor's step: one bounded batch of overdue jobs, in one unit of work. */
export async function sweepDeadlines(unitOfWork: UnitOfWork, limit: number): Promise<TimedOut> {
  return unitOfWork.run(async ({ client, deps }) => ({ value: await failOverdueJobs(client, deps, limit) }));
}

/**
 * At a stage start (inside the job message's claim): starts a new stage's clock when the stage
 * declares a timeout, then fails the job at once if it is already past a deadline, so no fan-out
 * runs for a job out of time. Returns the timeout, or null to go on.
 */
export async function startStageClock(db: Queryable, deps: AdvanceDeps, job: JobRow, stageTimeoutSeconds: number | undefined, newStage: boolean): Promise<DeadlineExceededError | null> {
  const starts = newStage && stageTimeoutSeconds !== undefined;
  if (starts) await startStageDeadline(db, job.job_id, job.stage, stageTimeoutSeconds);
  if (!starts && job.deadline_at === null && job.stage_deadline_at === null) return null;
  const timedOut = await failOverdueJobs(db, deps, 1, [job.job_id]);
  return timedOut.jobs[0]?.reason ?? null;
}

/** An operator retry: fresh deadlines of the same lengths (see restartDeadlines). */
export async function restartJobDeadlines(db: Queryable, deps: AdvanceDeps, job: JobRow): Promise<void> {
  const definition = deps.registry.hasJob(job.job_type) ? deps.registry.job(job.job_type) : undefined;
  const stageTimeout = definition?.stages[job.stage - 1]?.timeoutSeconds;
  if (job.timeout_seconds === null && stageTimeout === undefined) return;
  await restartDeadlines(db, job.job_id, stageTimeout);
}
