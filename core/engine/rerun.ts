import {
  isSignalStage,
  MAX_LISTED_RERUN_TASKS,
  MAX_RERUN_TASKS,
  RERUNNABLE_JOB_STATUSES,
  type ParsedRerunRequest,
  type RerunEventDetail,
  type RerunOutcome,
} from '../../models';
import type { Queryable } from '../db/pool';
import { InvalidTransitionError, JobNotFoundError, RerunRefusedError, ValidationError } from '../errors';
import { findJob, transitionJob } from '../state/jobs-store';
import {
  deleteStagesAfter,
  recordRerunEvent,
  reopenStageForRerun,
  requeueRerunTasks,
  resetJobForRerun,
  selectRerunTasks,
  stageLeftovers,
  taskIdsNotInStage,
} from '../state/rerun-store';
import { findStage } from '../state/stages-store';
import { assertTaskTransition } from '../state/transitions';
import { afterCommit, NOTHING_AFTER_COMMIT, type AfterCommit, type EngineContext } from './after-commit';
import { restartJobDeadlines } from './deadlines';
import type { OutboxIntent } from './outbox';
import { definitionOf, waitingForVersion } from './versions';

/** What a re-run decided in its transaction, and what follows its commit. */
export interface RerunResult {
  outcome: Omit<RerunOutcome, 'job'>;
  after: AfterCommit;
  /** Payload store blobs of the values the re-run replaced: deleted after the commit, before `heldMessage` goes. */
  blobKeys: string[];
  /**
   * The job message that starts the re-run, when it must wait for `blobKeys` to be deleted: blob
   * names are content-addressed, so a task that returns its old value again writes the same blob,
   * and a delete after that write would lose it. No task of the stage can be claimed before this
   * message starts it (claims need the job PROCESSING there), so deleting first is safe.
   */
  heldMessage?: OutboxIntent;
}

/**
 * The tag that makes a re-run job's messages new (migration 024): stages after the re-run stage
 * start again, and their job and task messages would carry the first run's ids, which Service Bus
 * duplicate detection drops within its window.
 */
export function rerunResend(reruns: number | undefined): { resend?: string } {
  return reruns !== undefined && reruns > 0 ? { resend: `rerun${reruns}` } : {};
}

/**
 * A targeted re-run, in the caller's transaction under the job's row lock. The chosen finished
 * tasks of a finished stage (and the stage's tasks a failure cancelled, which never ran) go back to
 * QUEUED with their results cleared; the stage reopens with its counts less theirs, so it completes
 * when they have; the stages after it are deleted (fanned out again from the new results) and the
 * job's result and error cleared (finalize runs again); the job goes back to QUEUED at that stage
 * through the transition table, and its job message re-dispatches the stage as an operator retry
 * does. A dry run makes the same checks and selection and changes nothing.
 *
 * Attempts keep counting: a task's next claim is its attempt + 1 (message ids and the trail of the
 * new run are its own), and its type's retry policy gives it what is left of `maxAttempts`, at least
 * this one attempt, as an operator retry does. Deadlines restart with their full lengths.
 */
export async function rerunTasks(db: Queryable, context: EngineContext, jobId: string, request: ParsedRerunRequest): Promise<RerunResult> {
  const job = await findJob(db, jobId, true);
  if (!job) throw new JobNotFoundError(jobId);
  const { stage } = request;
  if (!RERUNNABLE_JOB_STATUSES.includes(job.status)) {
    const why = job.status === 'CANCELLED' ? 'a CANCELLED job is final' : 'wait until it has ended, or cancel it';
    throw new InvalidTransitionError('job', jobId, job.status, 'QUEUED', `only a job that ended ${RERUNNABLE_JOB_STATUSES.join(', ')} re-runs tasks; ${why}`);
  }
  const refuse = (detail: string) => new RerunRefusedError(jobId, stage, detail);
  const definition = definitionOf(context.registry, job);
  if (!definition) throw refuse(waitingForVersion(context.registry, job) ?? `version ${job.job_version} is not deployed`);
  const stageDefinition = definition.stages[stage - 1];
  if (!stageDefinition) throw refuse(`job type "${job.job_type}" has ${definition.stages.length} stage(s)`);
  if (isSignalStage(stageDefinition)) throw refuse(`it waits for a signal and has no tasks to run again`);
  if (stage > job.stage) throw refuse(`the job ended at stage ${job.stage}, before this stage ran`);
  const stageRow = await findStage(db, jobId, stage);
  if (!stageRow) throw refuse('it never started: retry the job instead');
  if (stageRow.creating) throw refuse('its tasks were never all created (its fan-out failed or was cut short): retry the job instead');
  if (stageRow.status !== 'COMPLETED' && stageRow.status !== 'FAILED') throw refuse(`it is ${stageRow.status}, not finished`);

  if (request.taskIds) await refuseForeignTaskIds(db, jobId, stage, request.taskIds);
  const chosen = await selectRerunTasks(db, {
    jobId,
    stage,
    taskIds: request.taskIds ?? null,
    status: request.status ?? null,
    resultPath: request.resultField ? request.resultField.path.split('.') : null,
    resultEquals: request.resultField?.equals,
    limit: MAX_RERUN_TASKS + 1,
  });
  if (chosen.length > MAX_RERUN_TASKS) {
    throw refuse(`more than ${MAX_RERUN_TASKS} of its tasks match, and one re-run takes at most ${MAX_RERUN_TASKS}: narrow the selection`);
  }
  const leftovers = await stageLeftovers(db, jobId, stage);
  const recomputedStages = Array.from({ length: job.total_stages - stage }, (_, i) => stage + 1 + i);
  const described = {
    jobId,
    stage,
    selected: chosen.length,
    taskIds: chosen.slice(0, MAX_LISTED_RERUN_TASKS).map((row) => row.task_id),
    unfinished: leftovers.unfinished,
    ...(request.resultField ? { unexamined: leftovers.stored } : {}),
    recomputedStages,
  };
  if (request.dryRun) return { outcome: { ...described, dryRun: true, reruns: job.reruns }, after: NOTHING_AFTER_COMMIT, blobKeys: [] };
  if (chosen.length === 0) throw refuse('no finished task of the stage matches the selection (a dry run shows what a selection chooses)');

  assertTaskTransition('*', 'COMPLETED', 'QUEUED');
  assertTaskTransition('*', 'FAILED', 'QUEUED');
  assertTaskTransition('*', 'CANCELLED', 'QUEUED');
  // Lock order job → tasks (by id) → stages, as everywhere: the stage's tasks, the later tasks, then the stage rows.
  const requeued = await requeueRerunTasks(
    db,
    jobId,
    stage,
    chosen.map((row) => row.task_id),
  );
  const later = await deleteStagesAfter(db, jobId, stage);
  const uncount = { completed: requeued.filter((row) => row.was === 'COMPLETED').length, failed: requeued.filter((row) => row.was === 'FAILED').length };
  if (!(await reopenStageForRerun(db, jobId, stage, uncount)))
    throw new Error(`stage ${stage} of job ${jobId} changed under the job's row lock during a re-run`);
  const reruns = await resetJobForRerun(db, jobId);
  const moved = await transitionJob(db, jobId, job.status, 'QUEUED', { atStage: job.stage, toStage: stage });
  if (!moved) throw new Error(`job ${jobId} changed under its row lock during a re-run`);
  await restartJobDeadlines(db, context, moved);

  const unfinished = requeued.filter((row) => row.was === 'CANCELLED').length;
  const detail: RerunEventDetail = {
    rerun: reruns,
    selected: chosen.length,
    unfinished,
    taskIds: described.taskIds.slice(0, 100),
    filter: {
      ...(request.taskIds ? { taskIds: request.taskIds.length } : {}),
      ...(request.status ? { status: request.status } : {}),
      ...(request.resultField ? { resultField: { path: request.resultField.path, equals: request.resultField.equals } } : {}),
    },
    recomputedStages,
  };
  await recordRerunEvent(db, { jobId, stage, from: job.status, to: 'QUEUED', detail });
  context.logger.info('job re-run', { jobId, stage, from: job.status, tasks: chosen.length, unfinished, deletedTasks: later.tasks, rerun: reruns });

  const blobKeys = [...requeued.flatMap((row) => (row.result_key ? [row.result_key] : [])), ...later.keys, ...(job.result_ref ? [job.result_ref.key] : [])];
  const message: OutboxIntent = { kind: 'job', jobId, message: { jobId, jobType: job.job_type, stage, ...rerunResend(reruns) } };
  const after = afterCommit({
    transitions: [{ name: 'JobTransition', attributes: { jobId, jobType: job.job_type, from: job.status, to: 'QUEUED', stage } }],
    intents: blobKeys.length === 0 ? [message] : [],
  });
  return {
    outcome: { ...described, unfinished, dryRun: false, reruns },
    after,
    blobKeys,
    ...(blobKeys.length > 0 ? { heldMessage: message } : {}),
  };
}

/** Ids that name no task of the stage are a mistake in the request: 400, with an issue per id. */
async function refuseForeignTaskIds(db: Queryable, jobId: string, stage: number, taskIds: readonly string[]): Promise<void> {
  const foreign = await taskIdsNotInStage(db, jobId, stage, taskIds);
  if (foreign.length === 0) return;
  const issues = foreign.map((id) => ({
    code: 'custom',
    path: ['taskIds', taskIds.indexOf(id)],
    message: `${id} is not a task of stage ${stage} of this job`,
  }));
  throw new ValidationError(
    `${foreign.length} of taskIds ${foreign.length === 1 ? 'is' : 'are'} not a task of stage ${stage} of job ${jobId}: ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}`,
    issues,
  );
}
