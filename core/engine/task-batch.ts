import type pg from 'pg';
import { retryDelayMs, TaskFailure, TaskQueueMessage, type AnyTaskDefinition, type ErrorShape } from '../../models';
import type { Queryable } from '../db/pool';
import { retryTransient } from '../db/retry-transient';
import { TransientDatabaseError } from '../db/transient-errors';
import { errorToShape, isNonRetryable, MalformedMessageError, TaskHandlerError, TaskNotFoundError, TaskValidationError, describeZodError } from '../errors';
import type { Logger } from '../logger';
import { claimTasks, describeTasks, extendLease, settleTasks, type ClaimedTask, type SettledTask, type TaskOutcome } from '../state/tasks-store';
import { countStageResults } from '../state/stages-store';
import { lockJobs } from '../state/jobs-store';
import { advanceStage, failJob, type AdvanceDeps } from './stage-advance';
import type { OutboxIntent } from './outbox';

export const DEFAULT_LEASE_SECONDS = 300;

export type TaskMessageOutcome =
  | { outcome: 'completed' | 'failed'; taskId: string }
  | { outcome: 'duplicate' | 'ignored' | 'fenced'; taskId: string; reason: string }
  | { outcome: 'malformed'; taskId?: string; reason: string; error: MalformedMessageError | TaskNotFoundError };

export interface Parsed {
  index: number;
  message: TaskQueueMessage;
}

export function parseTaskMessages(bodies: readonly unknown[]): { parsed: Parsed[]; outcomes: Array<TaskMessageOutcome | undefined> } {
  const outcomes: Array<TaskMessageOutcome | undefined> = bodies.map(() => undefined);
  const parsed: Parsed[] = [];
  const seen = new Set<string>();
  bodies.forEach((body, index) => {
    const result = TaskQueueMessage.safeParse(body);
    if (!result.success) {
      const error = new MalformedMessageError(`task message does not match TaskQueueMessage: ${describeZodError(result.error)}`, result.error.issues);
      outcomes[index] = { outcome: 'malformed', reason: error.message, error };
      return;
    }
    const key = `${result.data.taskId}:${result.data.attempt}`;
    if (seen.has(key)) {
      outcomes[index] = { outcome: 'duplicate', taskId: result.data.taskId, reason: 'same message twice in one batch' };
      return;
    }
    seen.add(key);
    parsed.push({ index, message: result.data });
  });
  return { parsed, outcomes };
}

function leaseFor(deps: AdvanceDeps, taskType: string): number {
  return deps.registry.hasTask(taskType) ? (deps.registry.task(taskType).leaseSeconds ?? DEFAULT_LEASE_SECONDS) : DEFAULT_LEASE_SECONDS;
}

export async function claim(db: Queryable, deps: AdvanceDeps, parsed: readonly Parsed[]): Promise<ClaimedTask[]> {
  return claimTasks(
    db,
    parsed.map((p) => ({ taskId: p.message.taskId, attempt: p.message.attempt })),
    parsed.map((p) => leaseFor(deps, p.message.taskType)),
  );
}

/** Why a message could not claim its task: already done, stopped, or in flight elsewhere. */
export async function classifyUnclaimed(db: Queryable, unclaimed: readonly Parsed[]): Promise<Map<number, TaskMessageOutcome>> {
  const states = new Map((await describeTasks(db, unclaimed.map((p) => p.message.taskId))).map((s) => [s.task_id, s]));
  const outcomes = new Map<number, TaskMessageOutcome>();
  for (const { index, message } of unclaimed) {
    const state = states.get(message.taskId);
    const taskId = message.taskId;
    if (!state) {
      const error = new TaskNotFoundError(taskId);
      outcomes.set(index, { outcome: 'malformed', taskId, reason: error.message, error });
    } else if (state.attempt > message.attempt || state.status === 'COMPLETED' || state.status === 'FAILED' || state.status === 'CANCELLED') {
      outcomes.set(index, { outcome: 'duplicate', taskId, reason: `task is ${state.status} at attempt ${state.attempt}` });
    } else if (state.status === 'PROCESSING') {
      outcomes.set(index, { outcome: 'duplicate', taskId, reason: 'task is being processed under a live lease' });
    } else {
      outcomes.set(index, { outcome: 'ignored', taskId, reason: 'job is not processing this stage' });
    }
  }
  return outcomes;
}

/**
 * Runs one claimed task's handler; every error becomes the task's recorded failure, or a retry
 * when the task type's policy allows another attempt. `controller` lets a cancel abort it.
 */
export async function runClaimedTask(
  pool: pg.Pool,
  deps: AdvanceDeps,
  task: ClaimedTask,
  logger: Logger,
  controller: AbortController = new AbortController(),
): Promise<TaskOutcome> {
  const where = { stage: task.stage, taskId: task.task_id };
  let definition: AnyTaskDefinition | undefined;
  try {
    definition = deps.registry.task(task.task_type);
    const parameters = definition.parameters.safeParse(task.parameters);
    if (!parameters.success) {
      throw new TaskValidationError(`parameters of task ${task.task_id} (${task.task_type}) are invalid: ${describeZodError(parameters.error)}`, parameters.error.issues);
    }
    const leaseSeconds = definition.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
    let result: unknown;
    try {
      result = await definition.handler(parameters.data, {
        jobId: task.job_id,
        taskId: task.task_id,
        stage: task.stage,
        taskIndex: task.task_index,
        attempt: task.attempt,
        signal: controller.signal,
        heartbeat: async () => {
          // A heartbeat that cannot reach the database after the retries throws
          // TransientDatabaseError; the catch below gives the task back instead of failing it.
          if (!(await retryTransient(() => extendLease(pool, task.task_id, task.claim_id, leaseSeconds)))) {
            controller.abort(new Error(`lease on task ${task.task_id} was lost`));
          }
        },
      });
    } catch (error) {
      throw new TaskHandlerError(errorToShape(error).message, { cause: error });
    }
    if (JSON.stringify(result ?? null) === undefined) {
      throw new TaskFailure(`result of task ${task.task_id} is not JSON-serialisable`, { nonRetryable: true });
    }
    return { taskId: task.task_id, jobId: task.job_id, claimId: task.claim_id, result: result ?? null };
  } catch (error) {
    // The engine's own database was unreachable (a heartbeat, rethrown by the handler): that is
    // not the work failing, so it is neither an attempt nor the task's error. The batch is given
    // back and the task re-claimed. A handler's own errors stay the task's, whatever they are.
    const infrastructure = engineTransientFault(error);
    if (infrastructure) throw infrastructure;
    const shape: ErrorShape = errorToShape(error, where);
    const retryAt = nextAttemptAt(definition, task.attempt, error);
    logger.warn(retryAt ? 'task attempt failed; retry scheduled' : 'task failed', {
      jobId: task.job_id, taskId: task.task_id, stage: task.stage, attempt: task.attempt,
      errorType: shape.type, error: shape.message, retryAt: retryAt?.toISOString(),
    });
    return { taskId: task.task_id, jobId: task.job_id, claimId: task.claim_id, error: shape, ...(retryAt ? { retryAt } : {}) };
  }
}

/** When the next attempt is due, or undefined when the failure is final. */
export function nextAttemptAt(definition: AnyTaskDefinition | undefined, attempt: number, error: unknown): Date | undefined {
  const policy = definition?.retry;
  if (!policy || attempt >= policy.maxAttempts) return undefined;
  const failure = findTaskFailure(error);
  if (isNonRetryable(error) || failure?.nonRetryable) return undefined;
  return new Date(Date.now() + (failure?.retryAfterMs ?? retryDelayMs(policy, attempt)));
}

function engineTransientFault(error: unknown): TransientDatabaseError | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    if (current instanceof TransientDatabaseError) return current;
  }
  return undefined;
}

function findTaskFailure(error: unknown): TaskFailure | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    if (current instanceof TaskFailure) return current;
  }
  return undefined;
}

/**
 * Commits a batch's outcomes: task rows (fenced by claim), then each stage's counter moved once
 * by its k results, in a fixed (job, stage) order so concurrent batches cannot deadlock.
 */
export async function commitOutcomes(
  db: Queryable,
  deps: AdvanceDeps,
  outcomes: readonly TaskOutcome[],
): Promise<{ settled: Set<string>; intents: OutboxIntent[] }> {
  await lockJobs(db, outcomes.map((o) => o.jobId));
  const settled = await settleTasks(db, outcomes);
  return { settled: new Set(settled.map((row) => row.task_id)), intents: await applySettledTasks(db, deps, settled) };
}

/**
 * What every settled task leads to, whoever settled it (worker, janitor, dead-letter consumer):
 * retries become scheduled messages; results move their stage's counters; a stage past its
 * failure tolerance fails its job; the completer that reaches the total advances the job.
 */
export async function applySettledTasks(db: Queryable, deps: AdvanceDeps, settled: readonly SettledTask[]): Promise<OutboxIntent[]> {
  const groups = new Map<string, { jobId: string; stage: number; completed: number; failed: number; firstError?: ErrorShape }>();
  const intents: OutboxIntent[] = [];
  for (const row of settled) {
    if (row.status === 'QUEUED') {
      // A retry: not counted; its next attempt is a scheduled message (remote tasks are polled).
      if (!row.remote) {
        const message = { taskId: row.task_id, jobId: row.job_id, stage: row.stage, taskType: row.task_type, attempt: row.attempt + 1 };
        intents.push({ kind: 'task', jobId: row.job_id, message, ...(row.retry_at ? { notBefore: row.retry_at } : {}) });
      }
      continue;
    }
    const key = `${row.job_id}\u0000${String(row.stage).padStart(6, '0')}`;
    const group = groups.get(key) ?? { jobId: row.job_id, stage: row.stage, completed: 0, failed: 0 };
    if (row.status === 'FAILED') {
      group.failed++;
      group.firstError ??= row.error ?? undefined;
    } else group.completed++;
    groups.set(key, group);
  }
  for (const key of [...groups.keys()].sort()) {
    const group = groups.get(key);
    if (!group) continue;
    const stageRow = await countStageResults(db, group.jobId, group.stage, group.completed, group.failed);
    // Past the stage's tolerance (0 for fail fast) the job fails with the error that tipped it.
    if (group.firstError && stageRow.failed > stageRow.max_failures) await failJob(db, deps, group.jobId, group.stage, group.firstError);
    if (stageRow.completed + stageRow.failed === stageRow.total) intents.push(...(await advanceStage(db, deps, stageRow)));
  }
  return intents;
}
