import type { ErrorShape } from '../../models';
import type { Queryable } from '../db/pool';
import { isTransientDatabaseError } from '../db/transient-errors';
import { boundedErrorShape, errorToShape, FinalizeError, findCause } from '../errors';
import { jsonToStore } from '../../models/storable';
import { PayloadStoreUnavailableError } from '../payloads/payload-errors';
import { INLINE_PAYLOADS, type Placed } from '../payloads/payloads';
import { findJob, transitionJob } from '../state/jobs-store';
import type { StageRow } from '../state/rows';
import { countFailedOfJob, finishStage } from '../state/stages-store';
import { cancelOpenTasks, listFailedTasks } from '../state/tasks-store';
import { afterCommit, NOTHING_AFTER_COMMIT, type AfterCommit, type EngineContext, type RunningTaskAbort, type Transition } from './after-commit';
import { rerunResend } from './rerun';
import { stageResultsOf } from './stage-results';
import { definitionOf, waitingForVersion } from './versions';

/**
 * Called by the one transaction whose counter update made completed + failed = total.
 * The job row is locked first so a concurrent cancel or failure is seen, and a job that is no
 * longer PROCESSING at this stage is never revived by a late sibling.
 * More stages: job PROCESSING → QUEUED at stage n + 1, then (after commit) the job message.
 * Last stage: finalize, job → COMPLETED with the result.
 */
export async function advanceStage(db: Queryable, context: EngineContext, stageRow: StageRow): Promise<AfterCommit> {
  const job = await findJob(db, stageRow.job_id, true);
  if (!job || job.status !== 'PROCESSING' || job.stage !== stageRow.stage) return NOTHING_AFTER_COMMIT;
  if (stageRow.stage >= job.total_stages && !definitionOf(context.registry, job)) {
    // Its finalize is in a version this deployment lacks: the stage stays counted and open, and the
    // janitor's stall sweep advances the job once the version is back (core/engine/versions.ts).
    context.logger.warn('job waits: its version is not deployed', { jobId: job.job_id, reason: waitingForVersion(context.registry, job) });
    return NOTHING_AFTER_COMMIT;
  }
  const finished = await finishStage(db, job.job_id, stageRow.stage, 'PROCESSING', 'COMPLETED');
  const log = context.logger.child({ jobId: job.job_id, stage: stageRow.stage });
  const transitions: Transition[] = [];
  if (finished) {
    transitions.push({
      name: 'StageCompleted',
      attributes: { jobId: job.job_id, jobType: job.job_type, stage: stageRow.stage, stageName: stageRow.name, total: stageRow.total, failed: stageRow.failed },
      ...(finished.started_at && finished.finished_at ? { stageDurationMs: finished.finished_at.getTime() - finished.started_at.getTime() } : {}),
    });
  }

  if (stageRow.stage < job.total_stages) {
    const next = stageRow.stage + 1;
    const queued = await transitionJob(db, job.job_id, 'PROCESSING', 'QUEUED', { atStage: stageRow.stage, toStage: next });
    if (!queued) throw new Error(`job ${job.job_id} changed under its row lock during the stage advance`);
    transitions.push({ name: 'JobTransition', attributes: { jobId: job.job_id, jobType: job.job_type, from: 'PROCESSING', to: 'QUEUED', stage: next } });
    log.info('stage completed; job queued for next stage', { nextStage: next, total: stageRow.total });
    // A re-run job starts the stages after the re-run one again: its messages carry the re-run's tag, or duplicate detection would drop them.
    const message = { jobId: job.job_id, jobType: job.job_type, stage: next, ...rerunResend(job.reruns) };
    return afterCommit({ transitions, intents: [{ kind: 'job', jobId: job.job_id, message }] });
  }

  const definition = definitionOf(context.registry, job) as NonNullable<ReturnType<typeof definitionOf>>;
  const payloads = context.payloads ?? INLINE_PAYLOADS;
  const previous = stageResultsOf<unknown>(db, stageRow, payloads);
  let result: unknown;
  let placed: Placed;
  try {
    result = await definition.finalize({ jobId: job.job_id, parameters: job.parameters, previous });
    const stored = jsonToStore(result ?? null);
    if (stored.json === undefined) throw new TypeError(`its result ${stored.problem}`);
    // Too large for the row: into the payload store before this transaction commits (a rollback
    // or crash leaves an orphan the janitor sweeps); over every limit: the job fails, naming it.
    placed = await payloads.place(stored.json, { jobId: job.job_id, owner: 'job', field: 'result' }, `result of job ${job.job_id}`);
  } catch (error) {
    // Reading the results hit a database or payload store fault: the transaction is rerun (or the
    // stage check is, by the janitor), the job does not fail.
    if (isTransientDatabaseError(error)) throw error;
    const unavailable = findCause(error, (candidate): candidate is PayloadStoreUnavailableError => candidate instanceof PayloadStoreUnavailableError);
    if (unavailable) throw unavailable;
    const failure = errorToShape(new FinalizeError(`finalize of job type "${job.job_type}" failed: ${describe(error)}`, { cause: error }), {
      stage: stageRow.stage,
    });
    return afterCommit({ transitions }, (await failJob(db, context, job.job_id, stageRow.stage, failure)).after);
  }
  const failures = await tolerated(db, job.job_id);
  const status = failures.count > 0 ? 'COMPLETED_WITH_ERRORS' : 'COMPLETED';
  const error: ErrorShape | null =
    failures.count > 0
      ? { type: 'TasksFailedError', message: `${failures.count} task(s) failed within their stages' failure tolerance`, failures: failures.listed }
      : null;
  const completed = await transitionJob(db, job.job_id, 'PROCESSING', status, {
    atStage: stageRow.stage,
    ...(placed.ref ? { resultRef: placed.ref } : { resultJson: placed.json }),
    error,
  });
  if (!completed) throw new Error(`job ${job.job_id} changed under its row lock while finalizing`);
  transitions.push({
    name: 'JobTransition',
    attributes: { jobId: job.job_id, jobType: job.job_type, from: 'PROCESSING', to: status, stage: stageRow.stage },
    outcome: placed.ref ? { resultBytes: placed.ref.size, error } : { result: result ?? null, error },
  });
  log.info(status === 'COMPLETED' ? 'job completed' : 'job completed with errors', { failedTasks: failures.count });
  return afterCommit({ transitions });
}

const MAX_LISTED_FAILURES = 100;

/** The failed tasks a tolerant stage let through, for the COMPLETED_WITH_ERRORS record. */
async function tolerated(db: Queryable, jobId: string): Promise<{ count: number; listed: NonNullable<ErrorShape['failures']> }> {
  const failed = await countFailedOfJob(db, jobId);
  if (failed === 0) return { count: 0, listed: [] };
  const rows = await listFailedTasks(db, jobId, MAX_LISTED_FAILURES);
  const listed = rows.map((row) => ({ taskId: row.task_id, stage: row.stage, type: row.error?.type ?? 'Error', message: row.error?.message ?? '' }));
  return { count: failed, listed };
}

/**
 * Fail fast: the job becomes FAILED with the error that caused it, the stage FAILED, and its open
 * tasks are cancelled, as a cancel or a deadline does: nothing more is dispatched, a running
 * handler's late result is fenced, its concurrency slot is free at once, and no stopped job keeps
 * a running task for the janitor to look for (migration 015). Returns false when the job was
 * no longer PROCESSING at that stage (already failed or cancelled by someone else).
 */
export async function failJob(
  db: Queryable,
  context: EngineContext,
  jobId: string,
  stage: number,
  cause: ErrorShape,
): Promise<{ failed: boolean; after: AfterCommit }> {
  // Whatever failed it, the job's error (and its event) carries a bounded message.
  const error = boundedErrorShape(cause);
  const failed = await transitionJob(db, jobId, 'PROCESSING', 'FAILED', { atStage: stage, error });
  if (!failed) return { failed: false, after: NOTHING_AFTER_COMMIT };
  const transition: Transition = {
    name: 'JobTransition',
    attributes: {
      jobId,
      jobType: failed.job_type,
      from: 'PROCESSING',
      to: 'FAILED',
      stage,
      errorType: error.type,
      ...(error.taskId ? { taskId: error.taskId } : {}),
    },
    outcome: { error },
  };
  // Lock order job → tasks → stage, as a result commit takes tasks → stage: no deadlock between them.
  const cancelled = await cancelOpenTasks(db, jobId);
  const reason = new Error(`job ${jobId} failed: ${error.message}`);
  const aborts: RunningTaskAbort[] = cancelled.filter((task) => task.was_running).map((task) => ({ taskId: task.task_id, reason }));
  await finishStage(db, jobId, stage, 'PROCESSING', 'FAILED');
  context.logger.error('job failed', { jobId, stage, taskId: error.taskId, errorType: error.type, error: error.message, cancelledTasks: cancelled.length });
  return { failed: true, after: afterCommit({ transitions: [transition], aborts }) };
}

function describe(error: unknown): string {
  return errorToShape(error).message;
}
