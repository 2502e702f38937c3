import { randomUUID } from 'node:crypto';
import type { JobStatus } from '../../models';
import type { Queryable } from '../db/pool';
import { InvalidTransitionError, JobNotFoundError } from '../errors';
import { findJob, transitionJob } from '../state/jobs-store';
import { assertTaskTransition } from '../state/transitions';
import type { JobRow } from '../state/rows';
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

async function move(db: Queryable, job: JobRow, to: JobStatus, change: Parameters<typeof transitionJob>[4] = {}): Promise<JobRow> {
  const moved = await transitionJob(db, job.job_id, job.status, to, change);
  if (!moved) throw new Error(`job ${job.job_id} changed under its row lock`);
  return moved;
}

/**
 * Cancel: pending and running tasks CANCELLED (running handlers are aborted by the caller). A task
 * that never started keeps started_at NULL. now() is this transaction's start, and a claim that
 * committed while this one waited for the task's row lock started later: GREATEST keeps
 * finished_at from preceding started_at.
 */
export async function cancelJob(db: Queryable, jobId: string): Promise<{ job: JobRow; runningTaskIds: string[] }> {
  const job = await lockJob(db, jobId);
  assertTaskTransition('*', 'QUEUED', 'CANCELLED');
  assertTaskTransition('*', 'PROCESSING', 'CANCELLED');
  const cancelled = await move(db, job, 'CANCELLED', { error: { type: 'Cancelled', message: 'cancelled by an operator', stage: job.stage } });
  const tasks = await db.query<{ task_id: string; was_running: boolean }>({
    name: 'cm_cancel_job_tasks',
    text: `WITH old AS MATERIALIZED (SELECT task_id, status FROM coremachine.tasks WHERE job_id = $1 AND status IN ('QUEUED','PROCESSING') ORDER BY task_id FOR UPDATE)
           UPDATE coremachine.tasks t SET status = 'CANCELLED', finished_at = GREATEST(now(), t.started_at), claim_id = NULL, lease_expires_at = NULL
             FROM old WHERE t.task_id = old.task_id
           RETURNING t.task_id, old.status = 'PROCESSING' AS was_running`,
    values: [jobId],
  });
  await db.query({
    name: 'cm_cancel_job_stages',
    text: `UPDATE coremachine.stages SET status = 'CANCELLED', finished_at = GREATEST(now(), started_at) WHERE job_id = $1 AND status = 'PROCESSING'`,
    values: [jobId],
  });
  return { job: cancelled, runningTaskIds: tasks.rows.filter((t) => t.was_running).map((t) => t.task_id) };
}

/** Pause: running tasks finish and count; queued task messages are acknowledged without work. */
export async function pauseJob(db: Queryable, jobId: string): Promise<JobRow> {
  return move(db, await lockJob(db, jobId), 'PAUSED');
}

/** Resume: back to QUEUED at the same stage; its job message re-dispatches what is left. */
export async function resumeJob(db: Queryable, jobId: string): Promise<{ job: JobRow; intents: OutboxIntent[] }> {
  const job = await lockJob(db, jobId);
  if (job.status !== 'PAUSED') throw new InvalidTransitionError('job', jobId, job.status, 'QUEUED', 'only a PAUSED job can be resumed');
  const resumed = await move(db, job, 'QUEUED');
  return { job: resumed, intents: [stageMessage(resumed)] };
}

/**
 * Retry a FAILED job from its failed stage: only that stage's FAILED tasks (and the ones fail-fast
 * cancelled before they started) run again; completed work is kept. A stage whose fan-out failed
 * is started afresh; a failed finalize runs again.
 */
export async function retryJob(db: Queryable, jobId: string): Promise<{ job: JobRow; intents: OutboxIntent[] }> {
  const job = await lockJob(db, jobId);
  if (job.status !== 'FAILED') throw new InvalidTransitionError('job', jobId, job.status, 'QUEUED', 'only a FAILED job can be retried');
  const stage = job.stage;
  assertTaskTransition('*', 'FAILED', 'QUEUED');
  assertTaskTransition('*', 'CANCELLED', 'QUEUED');
  const requeued = await db.query<{ was_failed: boolean }>({
    name: 'cm_retry_job_tasks',
    text: `WITH old AS MATERIALIZED (SELECT task_id, status FROM coremachine.tasks WHERE job_id = $1 AND stage = $2 AND status IN ('FAILED','CANCELLED') ORDER BY task_id FOR UPDATE)
           UPDATE coremachine.tasks t SET status = 'QUEUED', started_at = NULL, finished_at = NULL, retry_at = NULL, claim_id = NULL, lease_expires_at = NULL
             FROM old WHERE t.task_id = old.task_id
           RETURNING old.status = 'FAILED' AS was_failed`,
    values: [jobId, stage],
  });
  const failedAgain = requeued.rows.filter((row) => row.was_failed).length;
  // A stage that failed in its fan-out has no tasks: forget it so the fan-out runs again.
  await db.query({
    name: 'cm_retry_forget_empty_failed_stage',
    text: `DELETE FROM coremachine.stages s WHERE job_id = $1 AND stage = $2 AND status = 'FAILED' AND total = 0
             AND NOT EXISTS (SELECT 1 FROM coremachine.tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage)`,
    values: [jobId, stage],
  });
  await db.query({
    name: 'cm_retry_reopen_stage',
    text: `UPDATE coremachine.stages SET failed = failed - $3, status = CASE WHEN status = 'FAILED' THEN 'PROCESSING' ELSE status END, finished_at = NULL
           WHERE job_id = $1 AND stage = $2`,
    values: [jobId, stage, failedAgain],
  });
  const queued = await move(db, job, 'QUEUED', { error: null });
  return { job: queued, intents: [stageMessage(queued)] };
}

/** A deliberate re-send: the nonce keeps Service Bus duplicate detection from dropping it. */
function stageMessage(job: JobRow): OutboxIntent {
  return { kind: 'job', jobId: job.job_id, message: { jobId: job.job_id, jobType: job.job_type, stage: job.stage, resend: randomUUID().slice(0, 8) } };
}
