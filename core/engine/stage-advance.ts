import type { ErrorShape } from '../../models';
import type { Queryable } from '../db/pool';
import { errorToShape, FinalizeError } from '../errors';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import { findJob, transitionJob } from '../state/jobs-store';
import type { StageRow } from '../state/rows';
import { finishStage } from '../state/stages-store';
import { cancelQueuedTasks } from '../state/tasks-store';
import type { OutboxIntent } from './outbox';
import { PagedStageResults } from './stage-results';

export interface AdvanceDeps {
  registry: Registry;
  logger: Logger;
}

/**
 * Called by the one transaction whose counter update made completed + failed = total.
 * The job row is locked first so a concurrent cancel or failure is seen, and a job that is no
 * longer PROCESSING at this stage is never revived by a late sibling.
 * More stages: job PROCESSING → QUEUED at stage n + 1, then (after commit) the job message.
 * Last stage: finalize, job → COMPLETED with the result.
 */
export async function advanceStage(db: Queryable, deps: AdvanceDeps, stageRow: StageRow): Promise<OutboxIntent[]> {
  const job = await findJob(db, stageRow.job_id, true);
  if (!job || job.status !== 'PROCESSING' || job.stage !== stageRow.stage) return [];
  await finishStage(db, job.job_id, stageRow.stage, 'PROCESSING', 'COMPLETED');
  const log = deps.logger.child({ jobId: job.job_id, stage: stageRow.stage });

  if (stageRow.stage < job.total_stages) {
    const next = stageRow.stage + 1;
    const queued = await transitionJob(db, job.job_id, 'PROCESSING', 'QUEUED', { atStage: stageRow.stage, toStage: next });
    if (!queued) throw new Error(`job ${job.job_id} changed under its row lock during the stage advance`);
    log.info('stage completed; job queued for next stage', { nextStage: next, total: stageRow.total });
    return [{ kind: 'job', jobId: job.job_id, message: { jobId: job.job_id, jobType: job.job_type, stage: next } }];
  }

  const definition = deps.registry.job(job.job_type);
  const previous = new PagedStageResults<unknown>(db, job.job_id, stageRow.stage, stageRow.completed);
  let result: unknown;
  try {
    result = await definition.finalize({ jobId: job.job_id, parameters: job.parameters, previous });
    JSON.stringify(result);
  } catch (error) {
    const failure = errorToShape(new FinalizeError(`finalize of job type "${job.job_type}" failed: ${describe(error)}`, { cause: error }), {
      stage: stageRow.stage,
    });
    await failJob(db, deps, job.job_id, stageRow.stage, failure);
    return [];
  }
  const completed = await transitionJob(db, job.job_id, 'PROCESSING', 'COMPLETED', { atStage: stageRow.stage, result: result ?? null });
  if (!completed) throw new Error(`job ${job.job_id} changed under its row lock while finalizing`);
  log.info('job completed');
  return [];
}

/**
 * Fail fast: the job becomes FAILED with the error that caused it, the stage FAILED, and tasks
 * not yet started are cancelled so nothing more is dispatched. Returns false when the job was
 * no longer PROCESSING at that stage (already failed or cancelled by someone else).
 */
export async function failJob(db: Queryable, deps: AdvanceDeps, jobId: string, stage: number, error: ErrorShape): Promise<boolean> {
  const failed = await transitionJob(db, jobId, 'PROCESSING', 'FAILED', { atStage: stage, error });
  if (!failed) return false;
  await finishStage(db, jobId, stage, 'PROCESSING', 'FAILED');
  const cancelled = await cancelQueuedTasks(db, jobId);
  deps.logger.error('job failed', { jobId, stage, taskId: error.taskId, errorType: error.type, error: error.message, cancelledTasks: cancelled });
  return true;
}

function describe(error: unknown): string {
  return errorToShape(error).message;
}
