import type pg from 'pg';
import { leaseSecondsOf, TaskFailure, type AnyTaskDefinition, type ErrorShape } from '../../models';
import { TransientDatabaseError } from '../db/transient-errors';
import { boundedErrorShape, errorToShape, findCause, TaskHandlerError, TaskValidationError, describeZodError } from '../errors';
import type { Logger } from '../logger';
import { PayloadStoreUnavailableError } from '../payloads/payload-errors';
import { INLINE_PAYLOADS, type Payloads, type Placed } from '../payloads/payloads';
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
  payloads: Payloads = INLINE_PAYLOADS,
): Promise<TaskOutcome> {
  let definition: AnyTaskDefinition | undefined;
  // Made once the handler is about to run: its log lines go with the outcome, whichever it is.
  let context: HandlerContext | undefined;
  try {
    definition = registry.task(task.task_type);
    // A spec the fan-out made too large for a row comes from the payload store, checked against its reference.
    const input = task.parameters_ref ? await payloads.read(task.parameters_ref, `parameters of task ${task.task_id}`) : task.parameters;
    const parameters = definition.parameters.safeParse(input);
    if (!parameters.success) {
      throw new TaskValidationError(
        `parameters of task ${task.task_id} (${task.task_type}) are invalid: ${describeZodError(parameters.error)}`,
        parameters.error.issues,
      );
    }
    const leaseSeconds = leaseSecondsOf(definition);
    let result: unknown;
    try {
      context = new HandlerContext(pool, task, leaseSeconds, controller, logger);
      result = await definition.handler(parameters.data, context);
    } catch (error) {
      throw new TaskHandlerError(errorToShape(error).message, { cause: error });
    }
    // Serialised once, here: a result that JSON cannot carry fails its task, and the settle stores this text.
    const stored = jsonToStore(result ?? null);
    if (stored.json === undefined) throw new TaskFailure(`result of task ${task.task_id} ${stored.problem}`, { nonRetryable: true });
    // Too large for a row: into the payload store before the commit (a crash in between leaves an
    // orphan the janitor sweeps); too large for any limit: the task fails naming the setting.
    // Most results are small: known inline without a promise. Typed as Placed: the literal's own
    // type would leave `ref` to union reduction, which the type checkers did not always agree on.
    const placed: Placed = payloads.fitsInline(stored.json)
      ? { json: stored.json }
      : await payloads.place(stored.json, { jobId: task.job_id, owner: task.task_id, field: 'result' }, `result of task ${task.task_id}`);
    const base = { taskId: task.task_id, jobId: task.job_id, claimId: task.claim_id };
    const outcome: TaskOutcome = placed.ref ? { ...base, resultRef: placed.ref } : { ...base, result: result ?? null, resultJson: placed.json };
    // Assigned, not spread, and only when the handler logged: this runs for every task.
    const logs = context.takeLogs();
    if (logs) outcome.logs = logs;
    return outcome;
  } catch (error) {
    // The engine's own database or payload store was unreachable (a heartbeat, rethrown by the
    // handler; a blob read or write): that is not the work failing, so it is neither an attempt
    // nor the task's error. The batch is given back and the task re-claimed. A handler's own
    // errors stay the task's, whatever they are.
    const infrastructure = findCause(
      error,
      (candidate): candidate is TransientDatabaseError | PayloadStoreUnavailableError =>
        candidate instanceof TransientDatabaseError || candidate instanceof PayloadStoreUnavailableError,
    );
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
    // A failed attempt keeps its lines: they are often what tells why.
    const logs = context?.takeLogs();
    return { taskId: task.task_id, jobId: task.job_id, claimId: task.claim_id, error: shape, ...(retryAt ? { retryAt } : {}), ...(logs ? { logs } : {}) };
  }
}
