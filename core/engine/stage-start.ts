import { isSignalStage, maxToleratedFailures, type JobQueueMessage } from '../../models';
import type { Queryable } from '../db/pool';
import { InvalidTransitionError, JobNotFoundError, MalformedMessageError } from '../errors';
import { findJob, transitionJob } from '../state/jobs-store';
import type { JobRow, StageRow } from '../state/rows';
import { findStage, insertCreatingStage } from '../state/stages-store';
import { afterCommit, NOTHING_AFTER_COMMIT, type AfterCommit, type EngineContext } from './after-commit';
import { advanceStage } from './stage-advance';
import { startWaitingStage } from './signal-stage';
import { startStageClock } from './deadlines';

export type JobMessageOutcome =
  | { kind: 'started' | 'resumed'; jobId: string; stage: number; tasks: number }
  | { kind: 'failed'; jobId: string; stage: number; error: string }
  | { kind: 'duplicate' | 'ignored'; jobId: string; stage: number; reason: string }
  /** The job's version is not registered by this deployment: nothing is done, and the janitor goes on once it is. */
  | { kind: 'waiting'; jobId: string; stage: number; reason: string };

/** What the job message's first transaction decided: done, or tasks to create (stage-creation.ts). */
export type StageClaim = { kind: 'done'; outcome: JobMessageOutcome; after: AfterCommit } | { kind: 'create'; job: JobRow; stage: StageRow; resend?: string };

/**
 * Handles a job message inside the caller's transaction: QUEUED → PROCESSING by compare-and-set
 * and the stage row, marked `creating`; its tasks are then created chunk by chunk, each in its
 * own transaction (stage-creation.ts). A stage that already started (resume, operator retry) is
 * re-dispatched, never fanned out twice; one whose creation was cut short (crash, redelivery,
 * pause) continues where its last committed chunk ended.
 */
export async function claimStage(db: Queryable, context: EngineContext, message: JobQueueMessage): Promise<StageClaim> {
  const job = await transitionJob(db, message.jobId, 'QUEUED', 'PROCESSING', { atStage: message.stage });
  if (!job) {
    const unfinished = await unfinishedCreation(db, message);
    if (unfinished) return unfinished;
    return { kind: 'done', outcome: await classifyUnclaimedJobMessage(db, message), after: NOTHING_AFTER_COMMIT };
  }
  if (job.job_type !== message.jobType) {
    throw new MalformedMessageError(`message names job type "${message.jobType}" but job ${job.job_id} is "${job.job_type}"`);
  }
  const definition = context.registry.job(job.job_type, job.job_version);
  const stageDefinition = definition.stages[job.stage - 1];
  if (!stageDefinition) throw new Error(`job type "${job.job_type}" has no stage ${job.stage}`);

  const existing = await findStage(db, job.job_id, job.stage);
  // A job already out of time fails here, before any fan-out; a new stage's clock starts here.
  const clock = await startStageClock(db, context, job, stageDefinition.timeoutSeconds, !existing);
  if (clock.timedOut)
    return { kind: 'done', outcome: { kind: 'failed', jobId: job.job_id, stage: job.stage, error: clock.timedOut.message }, after: clock.after };
  if (existing?.creating) return { kind: 'create', job, stage: existing, ...(message.resend ? { resend: message.resend } : {}) };
  if (existing) return resumeStage(db, context, job, existing, message.resend);
  if (isSignalStage(stageDefinition)) return startWaitingStage(db, context, job, stageDefinition);
  // Until the last chunk sets the real tolerance, none that the final total could allow is
  // exceeded early: the bound by count when the policy has one, else no bound yet.
  const bound = maxToleratedFailures(stageDefinition.failurePolicy, MAX_TASKS_PER_STAGE);
  const stage = await insertCreatingStage(db, { jobId: job.job_id, stage: job.stage, name: stageDefinition.name, maxFailures: bound });
  // A message's tag (a re-run's, a re-send's) goes on to its task messages: a stage created again
  // after a re-run makes task ids the first run's messages had, which duplicate detection would drop.
  return { kind: 'create', job, stage, ...(message.resend ? { resend: message.resend } : {}) };
}

/** A task_index is an int column: no stage can have more tasks than this. */
const MAX_TASKS_PER_STAGE = 2_147_483_647;

/** A redelivered message for a stage whose creation was cut short: the job is PROCESSING there. */
async function unfinishedCreation(db: Queryable, message: JobQueueMessage): Promise<StageClaim | null> {
  const job = await findJob(db, message.jobId);
  if (!job || job.status !== 'PROCESSING' || job.stage !== message.stage || job.job_type !== message.jobType) return null;
  const stage = await findStage(db, job.job_id, job.stage);
  return stage?.creating ? { kind: 'create', job, stage, ...(message.resend ? { resend: message.resend } : {}) } : null;
}

async function resumeStage(db: Queryable, context: EngineContext, job: JobRow, stage: StageRow, resend: string | undefined): Promise<StageClaim> {
  const outcome: JobMessageOutcome = { kind: 'resumed', jobId: job.job_id, stage: job.stage, tasks: stage.total - stage.completed - stage.failed };
  context.logger.info('stage resumed', { jobId: job.job_id, stage: job.stage, remaining: outcome.tasks });
  // Everything finished while the job was paused: the advance it could not make happens now.
  if (stage.completed + stage.failed >= stage.total) return { kind: 'done', outcome, after: await advanceStage(db, context, stage) };
  const definition = context.registry.job(job.job_type, job.job_version).stages[job.stage - 1];
  // A stage still waiting for its signal has nothing to dispatch: it keeps waiting.
  if (isSignalStage(definition)) return { kind: 'done', outcome, after: NOTHING_AFTER_COMMIT };
  // A result committing alongside this resume saw the job not yet PROCESSING, and this
  // transaction may not see its counts: read them again after commit.
  const taskType = definition?.task.type ?? '';
  return {
    kind: 'done',
    outcome,
    after: afterCommit({
      stageChecks: [{ jobId: job.job_id, stage: job.stage, probe: true }],
      intents: [{ kind: 'stage_tasks', jobId: job.job_id, stage: job.stage, taskType, ...(resend ? { resend } : {}) }],
    }),
  };
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
  if (job.job_type !== message.jobType)
    throw new MalformedMessageError(`message names job type "${message.jobType}" but job ${job.job_id} is "${job.job_type}"`);
  if (job.stage > message.stage) return { ...base, kind: 'duplicate', reason: `job is already at stage ${job.stage}` };
  // The engine sends a stage's message only after the job reached that stage, so one for a stage
  // ahead was not sent by it: no redelivery can make it valid.
  if (job.stage < message.stage)
    throw new MalformedMessageError(`message for stage ${message.stage} but job ${job.job_id} is at stage ${job.stage}, which the engine never sends`);
  if (job.status === 'PROCESSING') {
    if (await findStage(db, job.job_id, job.stage)) return { ...base, kind: 'duplicate', reason: 'stage already started' };
    throw new InvalidTransitionError('job', job.job_id, 'PROCESSING', 'PROCESSING', `stage ${job.stage} is PROCESSING but was never started`);
  }
  if (job.status === 'QUEUED') throw new Error(`job ${job.job_id} is QUEUED at stage ${job.stage} but could not be claimed`);
  return { ...base, kind: 'ignored', reason: `job is ${job.status}` };
}
