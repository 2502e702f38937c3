import { randomUUID } from 'node:crypto';
import type { JobStatus } from '../../models';
import type { Queryable } from '../db/pool';
import { InvalidTransitionError, JobNotFoundError } from '../errors';
import { findJob, transitionJob } from '../state/jobs-store';
import { assertTaskTransition } from '../state/transitions';
import type { JobRow } from '../state/rows';
import { cancelOpenStages, reopenStage } from '../state/stages-store';
import { cancelOpenTasks, requeueStoppedTasks } from '../state/tasks-store';
import { restartJobDeadlines } from './deadlines';
import { afterCommit, type AfterCommit, type EngineContext, type Transition } from './after-commit';
import type { OutboxIntent } from './outbox';

/**
 * Operator actions. Each runs in one transaction under the job's row lock and changes the job
 * only through the transition table; a change it forbids raises InvalidTransitionError (409).
 */
async function lockJob(db: Queryable, jobId: string): Promise<JobRow> {
  const job = await findJob(db, jobId, true);
  if (!job) throw new JobNotFoundError(jobId);
  return job;
}

/** What an operator action did: the job as it now is, and what its commit must be followed by. */
export interface ControlOutcome {
  job: JobRow;
  after: AfterCommit;
}

/** The transition, reported like every other once the unit of work commits. */
async function move(
  db: Queryable,
  job: JobRow,
  to: JobStatus,
  change: Parameters<typeof transitionJob>[4] = {},
): Promise<{ moved: JobRow; transition: Transition }> {
  const moved = await transitionJob(db, job.job_id, job.status, to, change);
  if (!moved) throw new Error(`job ${job.job_id} changed under its row lock`);
  return { moved, transition: { name: 'JobTransition', attributes: { jobId: job.job_id, jobType: job.job_type, from: job.status, to, stage: moved.stage } } };
}

/** Cancel: pending and running tasks and running stages CANCELLED; running handlers here are aborted once it commits. */
export async function cancelJob(db: Queryable, _context: EngineContext, jobId: string): Promise<ControlOutcome> {
  const job = await lockJob(db, jobId);
  assertTaskTransition('*', 'QUEUED', 'CANCELLED');
  assertTaskTransition('*', 'PROCESSING', 'CANCELLED');
  const { moved, transition } = await move(db, job, 'CANCELLED', { error: { type: 'CancelledError', message: 'cancelled by an operator', stage: job.stage } });
  const tasks = await cancelOpenTasks(db, jobId);
  await cancelOpenStages(db, jobId);
  const reason = new Error(`job ${jobId} was cancelled`);
  const aborts = tasks.filter((t) => t.was_running).map((t) => ({ taskId: t.task_id, reason }));
  return { job: moved, after: afterCommit({ transitions: [transition], aborts }) };
}

/** Pause: running tasks finish and count; queued task messages are acknowledged without work. */
export async function pauseJob(db: Queryable, _context: EngineContext, jobId: string): Promise<ControlOutcome> {
  const { moved, transition } = await move(db, await lockJob(db, jobId), 'PAUSED');
  return { job: moved, after: afterCommit({ transitions: [transition] }) };
}

/** Resume: back to QUEUED at the same stage; its job message re-dispatches what is left. */
export async function resumeJob(db: Queryable, _context: EngineContext, jobId: string): Promise<ControlOutcome> {
  const job = await lockJob(db, jobId);
  if (job.status !== 'PAUSED') throw new InvalidTransitionError('job', jobId, job.status, 'QUEUED', 'only a PAUSED job can be resumed');
  const { moved, transition } = await move(db, job, 'QUEUED');
  return { job: moved, after: afterCommit({ transitions: [transition], intents: [stageMessage(moved)] }) };
}

/**
 * Retry a FAILED job from its failed stage: only that stage's FAILED tasks (and the ones fail-fast
 * cancelled before they started) run again; completed work is kept. A stage whose fan-out failed
 * is started afresh; a failed finalize runs again. Deadlines restart with their full lengths.
 */
export async function retryJob(db: Queryable, context: EngineContext, jobId: string): Promise<ControlOutcome> {
  const job = await lockJob(db, jobId);
  if (job.status !== 'FAILED') throw new InvalidTransitionError('job', jobId, job.status, 'QUEUED', 'only a FAILED job can be retried');
  const stage = job.stage;
  assertTaskTransition('*', 'FAILED', 'QUEUED');
  assertTaskTransition('*', 'CANCELLED', 'QUEUED');
  const failedAgain = await requeueStoppedTasks(db, jobId, stage);
  await restartJobDeadlines(db, context, job);
  await reopenStage(db, jobId, stage, failedAgain);
  const { moved, transition } = await move(db, job, 'QUEUED', { error: null });
  return { job: moved, after: afterCommit({ transitions: [transition], intents: [stageMessage(moved)] }) };
}

/** A deliberate re-send: the nonce keeps Service Bus duplicate detection from dropping it. */
function stageMessage(job: JobRow): OutboxIntent {
  return { kind: 'job', jobId: job.job_id, message: { jobId: job.job_id, jobType: job.job_type, stage: job.stage, resend: randomUUID().slice(0, 8) } };
}
