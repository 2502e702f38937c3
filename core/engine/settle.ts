import type { ErrorShape } from '../../models';
import type { Queryable, TransactionOptions } from '../db/pool';
import { lockJobs } from '../state/jobs-store';
import { countStageResults } from '../state/stages-store';
import { settleTasks, type SettledTask, type TaskOutcome } from '../state/tasks-store';
import type { OutboxIntent } from './outbox';
import { advanceStage, failJob, type AdvanceDeps } from './stage-advance';
import type { UnitOfWork } from './unit-of-work';

/**
 * Settling: what a task attempt's outcome does to the task, its stage and its job. Every host of
 * an outcome settles here — the in-process batch, remote workers, the janitor (lost leases) and
 * the dead-letter consumer — so the counting and the failure policy cannot drift between them.
 */

/**
 * Settles outcomes in one unit of work (so their transitions are reported and their messages
 * dispatched, whoever reports them). Returns the tasks whose claim was still current: the others
 * changed nothing.
 */
export async function settleOutcomes(unitOfWork: UnitOfWork, outcomes: readonly TaskOutcome[], options: TransactionOptions = {}): Promise<Set<string>> {
  return unitOfWork.run(async ({ client, deps }) => {
    const committed = await commitOutcomes(client, deps, outcomes);
    return { value: committed.settled, intents: committed.intents };
  }, options);
}

/**
 * Commits outcomes of claimed tasks: task rows (fenced by claim), then each stage's counter moved
 * once by its k results, in a fixed (job, stage) order so concurrent batches cannot deadlock.
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
 * What every settled task leads to, whoever settled it: retries become scheduled messages;
 * results move their stage's counters; a stage past its failure tolerance fails its job; the
 * completer that reaches the total advances the job.
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
