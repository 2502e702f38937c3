import { maxToleratedFailures, type AnyStageDefinition, type JobQueueMessage } from '../../models';
import type { Queryable } from '../db/pool';
import { isTransientDatabaseError } from '../db/transient-errors';
import { errorToShape, FanOutError, InvalidTransitionError, JobNotFoundError, MalformedMessageError } from '../errors';
import { computeTaskId } from '../identity';
import { findJob, transitionJob } from '../state/jobs-store';
import type { JobRow, StageRow } from '../state/rows';
import { findStage, insertStage, setStageTotal } from '../state/stages-store';
import { insertStageTasks } from '../state/tasks-store';
import { releaseSavepoint, rollbackToSavepoint, savepoint } from '../state/savepoints';
import { failJob, advanceStage, type AdvanceDeps } from './stage-advance';
import type { OutboxIntent } from './outbox';
import { NO_RESULTS, PagedStageResults } from './stage-results';

export type JobMessageOutcome =
  | { outcome: 'started' | 'resumed'; jobId: string; stage: number; tasks: number }
  | { outcome: 'failed'; jobId: string; stage: number; error: string }
  | { outcome: 'duplicate' | 'ignored'; jobId: string; stage: number; reason: string };

/**
 * Handles a job message inside the caller's transaction: QUEUED → PROCESSING by compare-and-set,
 * then the stage's fan-out, its stage row with the total, and all its task rows, set-based.
 * A stage that already started (resume, operator retry) is re-dispatched, never fanned out twice.
 * Nothing is sent here; the returned intents go to the outbox in the same transaction.
 */
export async function startStage(
  db: Queryable,
  deps: AdvanceDeps,
  message: JobQueueMessage,
): Promise<{ outcome: JobMessageOutcome; intents: OutboxIntent[] }> {
  const job = await transitionJob(db, message.jobId, 'QUEUED', 'PROCESSING', { atStage: message.stage });
  if (!job) return { outcome: await classifyUnclaimedJobMessage(db, message), intents: [] };
  if (job.job_type !== message.jobType) {
    throw new MalformedMessageError(`message names job type "${message.jobType}" but job ${job.job_id} is "${job.job_type}"`);
  }
  const definition = deps.registry.job(job.job_type);
  const stageDefinition = definition.stages[job.stage - 1];
  if (!stageDefinition) throw new Error(`job type "${job.job_type}" has no stage ${job.stage}`);

  const existing = await findStage(db, job.job_id, job.stage);
  if (existing) return resumeStage(db, deps, job, existing, message.resend);

  // The stage row first (its total is known once the fan-out ends), then the tasks in chunks as
  // the fan-out yields them: memory stays flat however many tasks a stage has. A savepoint lets a
  // failing fan-out drop its partial tasks while the job is still marked FAILED.
  const remote = stageDefinition.task.execution === 'remote';
  const taskType = stageDefinition.task.type;
  await insertStage(db, { jobId: job.job_id, stage: job.stage, name: stageDefinition.name, total: 0, maxFailures: 0 });
  await savepoint(db, 'fan_out');
  let total: number;
  try {
    total = await fanOutInChunks(db, job, stageDefinition, (firstIndex, parameters) =>
      insertStageTasks(db, { jobId: job.job_id, stage: job.stage, taskType, remote, firstIndex, parameters, taskIds: parameters.map((_, i) => computeTaskId(job.job_id, job.stage, firstIndex + i)) }),
    );
  } catch (error) {
    // A database fault while inserting or reading results is not the fan-out's failure: the
    // transaction is rerun (or the message given back), the job does not fail.
    if (isTransientDatabaseError(error)) throw error;
    await rollbackToSavepoint(db, 'fan_out');
    const failure = new FanOutError(`fan-out of stage ${job.stage} ("${stageDefinition.name}") failed: ${errorToShape(error).message}`, { cause: error });
    await failJob(db, deps, job.job_id, job.stage, errorToShape(failure, { stage: job.stage }));
    return { outcome: { outcome: 'failed', jobId: job.job_id, stage: job.stage, error: failure.message }, intents: [] };
  }
  await releaseSavepoint(db, 'fan_out');
  const stageRow = await setStageTotal(db, job.job_id, job.stage, total, maxToleratedFailures(stageDefinition.failurePolicy, total));
  deps.events?.push({ name: 'StageStarted', attributes: { jobId: job.job_id, jobType: job.job_type, stage: job.stage, stageName: stageDefinition.name, tasks: total } });
  deps.logger.info('stage started', { jobId: job.job_id, stage: job.stage, stageName: stageDefinition.name, tasks: total, remote });

  // A stage with no tasks is complete the moment it starts; remote tasks wait to be polled.
  let intents: OutboxIntent[] = [];
  if (total === 0) intents = await advanceStage(db, deps, stageRow);
  else if (!remote) intents = [{ kind: 'stage_tasks', jobId: job.job_id, stage: job.stage, taskType }];
  return { outcome: { outcome: 'started', jobId: job.job_id, stage: job.stage, tasks: total }, intents };
}

async function resumeStage(
  db: Queryable,
  deps: AdvanceDeps,
  job: JobRow,
  stage: StageRow,
  resend: string | undefined,
): Promise<{ outcome: JobMessageOutcome; intents: OutboxIntent[] }> {
  const outcome: JobMessageOutcome = { outcome: 'resumed', jobId: job.job_id, stage: job.stage, tasks: stage.total - stage.completed - stage.failed };
  deps.logger.info('stage resumed', { jobId: job.job_id, stage: job.stage, remaining: outcome.tasks });
  // Everything finished while the job was paused: the advance it could not make happens now.
  if (stage.completed + stage.failed >= stage.total) return { outcome, intents: await advanceStage(db, deps, stage) };
  const taskType = deps.registry.job(job.job_type).stages[job.stage - 1]?.task.type ?? '';
  return { outcome, intents: [{ kind: 'stage_tasks', jobId: job.job_id, stage: job.stage, taskType, ...(resend ? { resend } : {}) }] };
}

const FAN_OUT_CHUNK = 5000;

/** Runs the stage's fanOut, handing its task specs (JSON) to `insert` in chunks; returns the count. */
async function fanOutInChunks(
  db: Queryable,
  job: JobRow,
  stageDefinition: AnyStageDefinition,
  insert: (firstIndex: number, parameters: string[]) => Promise<number>,
): Promise<number> {
  const previous = job.stage === 1 ? NO_RESULTS : await previousResults(db, job.job_id, job.stage - 1);
  const specs = await stageDefinition.fanOut({ jobId: job.job_id, stage: job.stage, parameters: job.parameters, previous });
  let total = 0;
  let chunk: string[] = [];
  for await (const spec of specs) {
    const json = JSON.stringify(spec);
    if (json === undefined) throw new TypeError(`task spec ${total} is not JSON-serialisable`);
    chunk.push(json);
    total++;
    if (chunk.length === FAN_OUT_CHUNK) {
      await insert(total - chunk.length, chunk);
      chunk = [];
    }
  }
  if (chunk.length > 0) await insert(total - chunk.length, chunk);
  return total;
}

async function previousResults(db: Queryable, jobId: string, stage: number): Promise<PagedStageResults<unknown>> {
  const row = await findStage(db, jobId, stage);
  if (!row) throw new Error(`stage ${stage} of job ${jobId} has no record but stage ${stage + 1} is starting`);
  return new PagedStageResults(db, jobId, stage, row.completed);
}

/**
 * The compare-and-set did not apply. A redelivered message for work already done is a duplicate
 * and is acknowledged; a job that is stopped is ignored; anything else is an invalid transition
 * and raises, so the message goes back to the queue and the error is visible.
 */
async function classifyUnclaimedJobMessage(db: Queryable, message: JobQueueMessage): Promise<JobMessageOutcome> {
  const job = await findJob(db, message.jobId);
  const base = { jobId: message.jobId, stage: message.stage };
  if (!job) throw new JobNotFoundError(message.jobId);
  if (job.stage > message.stage) return { ...base, outcome: 'duplicate', reason: `job is already at stage ${job.stage}` };
  if (job.stage < message.stage) {
    throw new InvalidTransitionError('job', job.job_id, job.status, 'PROCESSING', `message for stage ${message.stage} but the job is at stage ${job.stage}`);
  }
  if (job.status === 'PROCESSING') {
    if (await findStage(db, job.job_id, job.stage)) return { ...base, outcome: 'duplicate', reason: 'stage already started' };
    throw new InvalidTransitionError('job', job.job_id, 'PROCESSING', 'PROCESSING', `stage ${job.stage} is PROCESSING but was never started`);
  }
  if (job.status === 'QUEUED') throw new Error(`job ${job.job_id} is QUEUED at stage ${job.stage} but could not be claimed`);
  return { ...base, outcome: 'ignored', reason: `job is ${job.status}` };
}
