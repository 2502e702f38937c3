import { createHash } from 'node:crypto';
import { ACTIVE_JOB_STATUSES, type SignalStageDefinition } from '../../models';
import type { Queryable } from '../db/pool';
import { JobNotFoundError, SignalRefusedError } from '../errors';
import { canonicalJson } from '../identity';
import { findJob } from '../state/jobs-store';
import type { JobRow } from '../state/rows';
import { completeWaitingStage, findSignal, insertSignal, insertWaitingStage } from '../state/signals-store';
import { afterCommit, type AfterCommit, type EngineContext } from './after-commit';
import { advanceStage } from './stage-advance';
import type { StageClaim } from './stage-start';

/**
 * Stages that wait for a signal (approval gates). Waiting costs nothing: the stage row is written
 * once (total 1, no tasks, no message, no timer) and the job stays PROCESSING at that stage until
 * the signal arrives; delivering it counts the stage's one result and advances the job through the
 * same stage advance as a last task completion, in one unit of work.
 */

/** Called by claimStage, in its transaction, once the job moved QUEUED → PROCESSING at a waiting stage. */
export async function startWaitingStage(db: Queryable, context: EngineContext, job: JobRow, definition: SignalStageDefinition): Promise<StageClaim> {
  const signal = definition.signal.name;
  await insertWaitingStage(db, { jobId: job.job_id, stage: job.stage, name: definition.name, signal });
  context.logger.info('stage waiting for a signal', { jobId: job.job_id, stage: job.stage, signal });
  return {
    kind: 'done',
    outcome: { kind: 'started', jobId: job.job_id, stage: job.stage, tasks: 0 },
    after: afterCommit({
      transitions: [{ name: 'StageStarted', attributes: { jobId: job.job_id, jobType: job.job_type, stage: job.stage, stageName: definition.name, tasks: 0 } }],
    }),
  };
}

/** A signal whose payload already passed the waiting stage's schema. */
export interface ValidSignal {
  jobId: string;
  name: string;
  /** The stage that waits for it, from the job definition. */
  stage: number;
  payload: unknown;
}

/** SHA-256 of the payload's canonical JSON: equal payloads, equal digests, whatever the key order. */
export function signalDigest(payload: unknown): string {
  return createHash('sha256').update(canonicalJson(payload)).digest('hex');
}

/**
 * Delivers a signal inside the caller's transaction. Under the job's row lock (as every control
 * action takes it): a signal of that name already stored answers `repeated` if its payload is the
 * same and is refused if it differs; otherwise the job must be at the waiting stage and that stage
 * still waiting (compare-and-set on its counter), and the signal is stored and the stage advanced.
 *
 * A PAUSED job at its waiting stage (or one resumed and QUEUED again) still waits: the signal is
 * stored and counted, and the job advances when it runs again (claimStage's resume finds the stage
 * finished). Concurrent deliveries serialise on the row lock; the stage's compare-and-set and the
 * signals table's key make a second advance impossible even without it.
 */
export async function acceptSignal(db: Queryable, context: EngineContext, signal: ValidSignal): Promise<{ delivered: boolean; after: AfterCommit }> {
  const job = await findJob(db, signal.jobId, true);
  if (!job) throw new JobNotFoundError(signal.jobId);
  const digest = signalDigest(signal.payload);
  const stored = await findSignal(db, job.job_id, signal.name);
  if (stored) {
    if (stored.digest === digest) return { delivered: false, after: afterCommit() };
    throw new SignalRefusedError(job.job_id, signal.name, `it was already delivered at ${stored.received_at.toISOString()} with a different payload`);
  }
  if (!ACTIVE_JOB_STATUSES.includes(job.status) || job.stage !== signal.stage) {
    const where = job.stage < signal.stage ? `it waits for it at stage ${signal.stage}, not reached yet` : `it waits for it at stage ${signal.stage}`;
    throw new SignalRefusedError(job.job_id, signal.name, `the job is ${job.status} at stage ${job.stage}; ${where}`);
  }
  const stage = await completeWaitingStage(db, job.job_id, signal.stage, signal.name);
  if (!stage) throw new SignalRefusedError(job.job_id, signal.name, `stage ${signal.stage} is not waiting for it (not started yet, or stopped)`);
  if (!(await insertSignal(db, { jobId: job.job_id, name: signal.name, stage: signal.stage, payload: signal.payload, digest }))) {
    throw new Error(`signal "${signal.name}" of job ${job.job_id} was stored by another transaction under the job's row lock`);
  }
  context.logger.info('signal received', { jobId: job.job_id, stage: signal.stage, signal: signal.name, jobStatus: job.status });
  // advanceStage changes nothing unless the job is PROCESSING there; a paused job advances on resume.
  return { delivered: true, after: await advanceStage(db, context, stage) };
}
