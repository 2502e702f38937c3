import type { Queryable } from '../db/pool';
import { DeadlineExceededError } from '../errors';
import { restartDeadlines, startStageDeadline, lockOverdueJobs, type OverdueJob } from '../state/deadlines-store';
import { transitionJob } from '../state/jobs-store';
import type { JobRow } from '../state/rows';
import { finishStage } from '../state/stages-store';
import { cancelOpenTasks } from '../state/tasks-store';
import { assertTaskTransition } from '../state/transitions';
import { definitionOf } from './versions';
import { afterCommit, NOTHING_AFTER_COMMIT, type AfterCommit, type EngineContext } from './after-commit';

/**
 * Deadlines are enforced where work would otherwise start or continue, never by a timer per job:
 * the janitor's sweep (sweepDeadlines), every task claim (the claim statements skip overdue jobs
 * and the batch then fails them, failOverdueJobs) and every stage start (startStageClock).
 */

/** The jobs that timed out, and what their commit must be followed by (their handlers here aborted). */
export interface TimedOut {
  jobs: Array<{ jobId: string; reason: DeadlineExceededError }>;
  after: AfterCommit;
}

/**
 * Fails the overdue jobs it can lock (all of them, or those of `jobIds`): job → FAILED with a
 * Timeout error, its queued and running tasks CANCELLED (a late result is fenced off by its
 * cleared claim), its stage FAILED. The job's FAILED event carries the error: the trail says why.
 */
export async function failOverdueJobs(db: Queryable, context: EngineContext, limit: number, jobIds: readonly string[] | null = null): Promise<TimedOut> {
  const jobs: TimedOut['jobs'] = [];
  const parts: AfterCommit[] = [];
  for (const job of await lockOverdueJobs(db, limit, jobIds)) {
    const reason = new DeadlineExceededError(job.scope, job.stage, job.deadline, job.elapsed_ms);
    parts.push(await timeOut(db, context, job, reason));
    jobs.push({ jobId: job.job_id, reason });
  }
  return { jobs, after: afterCommit(...parts) };
}

async function timeOut(db: Queryable, context: EngineContext, job: OverdueJob, reason: DeadlineExceededError): Promise<AfterCommit> {
  const error = reason.toShape();
  const failed = await transitionJob(db, job.job_id, job.status, 'FAILED', { atStage: job.stage, error });
  if (!failed) throw new Error(`job ${job.job_id} changed under its row lock while timing out`);
  assertTaskTransition('*', 'QUEUED', 'CANCELLED');
  assertTaskTransition('*', 'PROCESSING', 'CANCELLED');
  const tasks = await cancelOpenTasks(db, job.job_id);
  await finishStage(db, job.job_id, job.stage, 'PROCESSING', 'FAILED');
  const running = tasks.filter((task) => task.was_running);
  context.logger.error('job timed out', {
    jobId: job.job_id,
    stage: job.stage,
    from: job.status,
    scope: job.scope,
    deadline: error.deadline,
    elapsedMs: error.elapsedMs,
    cancelledTasks: tasks.length,
    runningTasks: running.length,
  });
  return afterCommit({
    transitions: [
      {
        name: 'JobTransition',
        attributes: { jobId: job.job_id, jobType: job.job_type, from: job.status, to: 'FAILED', stage: job.stage, errorType: error.type },
        outcome: { error },
      },
    ],
    aborts: running.map((task) => ({ taskId: task.task_id, reason })),
  });
}

/**
 * At a stage start (inside the job message's claim): starts a new stage's clock when the stage
 * declares a timeout, then fails the job at once if it is already past a deadline, so no fan-out
 * runs for a job out of time. Returns the timeout, or null to go on.
 */
export async function startStageClock(
  db: Queryable,
  context: EngineContext,
  job: JobRow,
  stageTimeoutSeconds: number | undefined,
  newStage: boolean,
): Promise<{ timedOut: DeadlineExceededError | null; after: AfterCommit }> {
  const starts = newStage && stageTimeoutSeconds !== undefined;
  if (starts) await startStageDeadline(db, job.job_id, job.stage, stageTimeoutSeconds);
  if (!starts && job.deadline_at === null && job.stage_deadline_at === null) return { timedOut: null, after: NOTHING_AFTER_COMMIT };
  const failed = await failOverdueJobs(db, context, 1, [job.job_id]);
  return { timedOut: failed.jobs[0]?.reason ?? null, after: failed.after };
}

/** An operator retry: fresh deadlines of the same lengths (see restartDeadlines). */
export async function restartJobDeadlines(db: Queryable, context: EngineContext, job: JobRow): Promise<void> {
  const definition = definitionOf(context.registry, job);
  const stageTimeout = definition?.stages[job.stage - 1]?.timeoutSeconds;
  if (job.timeout_seconds === null && stageTimeout === undefined) return;
  await restartDeadlines(db, job.job_id, stageTimeout);
}
