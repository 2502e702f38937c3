import type pg from 'pg';
import { leaseSecondsOf, TaskFailure, type AnyTaskDefinition, type ErrorShape } from '../../models';
import { TransientDatabaseError } from '../db/transient-errors';
import { boundedErrorShape, errorToShape, findCause, TaskHandlerError, TaskValidationError, describeZodError } from '../errors';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import type { ClaimedTask, TaskOutcome } from '../state/tasks-store';
import { jsonToStore } from '../../models/storable';
import { HandlerContext } from './handler-context';
import { nextAttemptAt } from './retry-policy';
import { TaskAbort } from './running-tasks';

/** The lease of a claim of `taskType` (models/job-definition.ts leaseSecondsOf). */
export function leaseOfType(registry: Registry, taskType: string): number {
  return leaseSecondsOf(registry.hasTask(taskType) ? registry.task(taskType) : undefined);
}

/**
 * Runs one claimed task's handler; every error becomes the task's recorded failure, or a retry
 * when the task type's policy allows another attempt. `controller` lets a cancel abort it.
 */
export async function runClaimedTask(
  pool: pg.Pool,
  registry: Registry,
  task: ClaimedTask,
  logger: Logger,
  controller: TaskAbort = new TaskAbort(),
): Promise<TaskOutcome> {
  let definition: AnyTaskDefinition | undefined;
  try {
    definition = registry.task(task.task_type);
    const parameters = definition.parameters.safeParse(task.parameters);
    if (!parameters.success) {
      throw new TaskValidationError(
        `parameters of task ${task.task_id} (${task.task_type}) are invalid: ${describeZodError(parameters.error)}`,
        parameters.error.issues,
      );
    }
    const leaseSeconds = leaseSecondsOf(definition);
    let result: unknown;
    try {
      result = await definition.handler(parameters.data, new HandlerContext(pool, task, leaseSeconds, controller));
    } catch (error) {
      throw new TaskHandlerError(errorToShape(error).message, { cause: error });
    }
    // Serialised once, here: a result that JSON cannot carry fails its task, and the settle stores this text.
    const stored = jsonToStore(result ?? null);
    if (stored.json === undefined) throw new TaskFailure(`result of task ${task.task_id} ${stored.problem}`, { nonRetryable: true });
    return { taskId: task.task_id, jobId: task.job_id, claimId: task.claim_id, result: result ?? null, resultJson: stored.json };
  } catch (error) {
    // The engine's own database was unreachable (a heartbeat, rethrown by the handler): that is
    // not the work failing, so it is neither an attempt nor the task's error. The batch is given
    // back and the task re-claimed. A handler's own errors stay the task's, whatever they are.
    const infrastructure = findCause(error, (candidate): candidate is TransientDatabaseError => candidate instanceof TransientDatabaseError);
    if (infrastructure) throw infrastructure;
    // The message is copied into the task, the job's error and the events: bounded, as a remote report is.
    const shape: ErrorShape = boundedErrorShape(errorToShape(error, { stage: task.stage, taskId: task.task_id }));
    const retryAt = nextAttemptAt(definition, task.attempt, error);
    logger.warn(retryAt ? 'task attempt failed; retry scheduled' : 'task failed', {
      jobId: task.job_id,
      taskId: task.task_id,
      stage: task.stage,
      attempt: task.attempt,
      errorType: shape.type,
      error: shape.message,
      retryAt: retryAt?.toISOString(),
    });
    return { taskId: task.task_id, jobId: task.job_id, claimId: task.claim_id, error: shape, ...(retryAt ? { retryAt } : {}) };
  }
}
