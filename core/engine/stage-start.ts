import { maxToleratedFailures, type AnyStageDefinition, type JobQueueMessage } from '../../models';
import type { Queryable } from '../db/pool';
import { errorToShape, FanOutError, InvalidTransitionError, JobNotFoundError, MalformedMessageError } from '../errors';
import { computeTaskId } from '../identity';
import { findJob, transitionJob } from '../state/jobs-store';
import type { JobRow, StageRow } from '../state/rows';
import { findStage, insertStage } from '../state/stages-store';
import { insertStageTasks } from '../state/tasks-store';
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

  let taskParameters: string[];
  try {
    taskParameters = await runFanOut(db, job, stageDefinition);
  } catch (error) {
    const failure = new FanOutError(`fan-out of stage ${job.stage} ("${stageDefinition.name}") failed: ${errorToShape(error).message}`, { cause: error });
    await insertStage(db, { jobId: job.job_id, stage: job.stage, name: stageDefinition.name, total: 0, maxFailures: 0 });
    await failJob(db, deps, job.job_id, job.stage, errorToShape(failure, { stage: job.stage }));
    return { outcome: { outcome: 'failed', jobId: job.job_id, stage: job.stage, error: failure.message }, intents: [] };
  }

  const total = taskParameters.length;
  const maxFailures = maxToleratedFailures(stageDefinition.failurePolicy, total);
  const stageRow = await insertStage(db, { jobId: job.job_id, stage: job.stage, name: stageDefinition.name, total, maxFailures });
  const taskIds = taskParameters.map((_, index) => computeTaskId(job.job_id, job.stage, index));
  const remote = stageDefinition.task.execution === 'remote';
  await insertStageTasks(db, { jobId: job.job_id, stage: job.stage, taskType: stageDefinition.task.type, remote, taskIds, parameters: taskParameters });
  deps.events?.push({ name: 'StageStarted', attributes: { jobId: job.job_id, jobType: job.job_type, stage: job.stage, stageName: stageDefinition.name, tasks: total } });
  deps.logger.info('stage started', { jobId: job.job_id, stage: job.stage, stageName: stageDefinition.name, tasks: total, remote });

  // A stage with no tasks is complete the moment it starts; remote tasks wait to be polled.
  let intents: OutboxIntent[] = [];
  if (total === 0) intents = await advanceStage(db, deps, stageRow);
  else if (!remote) intents = [{ kind: 'stage_tasks', jobId: job.job_id, stage: job.stage, taskType: stageDefinition.task.type, taskIds }];
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

async function runFanOut(db: Queryable, job: JobRow, stageDefinition: AnyStageDefinition): Promise<string[]> {
  const previous = job.stage === 1 ? NO_RESULTS : await previousResults(db, job.job_id, job.stage - 1);
  const specs = await stageDefinition.fanOut({ jobId: job.job_id, stage: job.stage, parameters: job.parameters, previous });
  const encoded: string[] = [];
  for await (const spec of specs) {
    const json = JSON.stringify(spec);
    if (json === undefined) throw new TypeError(`task spec ${encoded.length} is not JSON-serialisable`);
    encoded.push(json);
  }
  return encoded;
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
