import type { TransactionOptions } from '../db/pool';
import { retryTransient } from '../db/retry-transient';
import { checkStage, probeCallsForCheck, type StageCheck } from './stage-check';
import type { UnitOfWork, WorkResult, WorkScope } from './unit-of-work';

/**
 * How the engine changes state, downhill: the unit of work commits the change and carries out its
 * messages, transitions and aborts; then, here, the stage checks the change called for run, each in
 * its own unit of work under the job row lock (a stage counted to its total advances, one past its
 * tolerance fails its job). A check calls for no further check. Neither a failed dispatch nor a
 * failed check stops the other: both run, and what failed is thrown after both.
 */
export async function commit<T>(unitOfWork: UnitOfWork, work: (scope: WorkScope) => Promise<WorkResult<T>>, options: TransactionOptions = {}): Promise<T> {
  const committed = await unitOfWork.run(work, options);
  const failures: unknown[] = 'dispatchFailure' in committed ? [committed.dispatchFailure] : [];
  await runStageChecks(unitOfWork, committed.stageChecks).catch((error: unknown) => failures.push(error));
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, 'stage checks and message dispatch after a commit both failed');
  return committed.value;
}

/** Each check in its own unit of work; a probe first reads, without a lock, whether it is needed. */
async function runStageChecks(unitOfWork: UnitOfWork, checks: readonly StageCheck[]): Promise<void> {
  for (const check of checks) {
    if (check.probe && !(await retryTransient(() => probeCallsForCheck(unitOfWork.pool, check)))) continue;
    const checked = await unitOfWork.run(async ({ client, context }) => ({ value: undefined, ...(await checkStage(client, context, check)) }));
    if (checked.stageChecks.length > 0) throw new Error(`the check of stage ${check.stage} of job ${check.jobId} called for another check`);
    if ('dispatchFailure' in checked) throw checked.dispatchFailure;
  }
}
