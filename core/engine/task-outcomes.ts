import type { ErrorShape } from '../../models';
import type { Queryable } from '../db/pool';
import { countStageResults } from '../state/stages-store';
import { settleTasks, type SettledTask, type TaskOutcome } from '../state/tasks-store';
import { afterCommit, type AfterCommit } from './after-commit';
import type { OutboxIntent } from './outbox';
import { stageNeedsCheck, type StageCheck } from './stage-check';
import { recordTaskLogs } from './task-logs';

/**
 * Settling: what a task attempt's outcome does to the task, its stage and its job. Every host of
 * an outcome settles here — the in-process batch, remote workers, the janitor (lost leases) and
 * the dead-letter consumer — so the counting and the failure policy cannot drift between them.
 */

/**
 * Commits outcomes of claimed tasks: task rows (fenced by claim, locked in task id order), then
 * each stage's counter moved once by its k results, in a fixed (job, stage) order so concurrent
 * batches cannot deadlock. The job row is not locked here: many instances committing results of
 * one job would queue on it. What the job must do next runs as a stage check after the commit.
 */
export async function recordTaskOutcomes(db: Queryable, outcomes: readonly TaskOutcome[]): Promise<{ settled: Set<string>; after: AfterCommit }> {
  const settled = await settleTasks(db, outcomes);
  const after = await followSettledTasks(db, settled);
  // What the attempts logged goes with their outcomes; no statement when none did.
  await recordTaskLogs(db, outcomes, settled);
  return { settled: new Set(settled.map((row) => row.task_id)), after };
}

/**
 * What every settled task leads to, whoever settled it: retries become scheduled messages;
 * results move their stage's counters; a stage counted to its total, or past its failure
 * tolerance, gets a stage check (core/engine/stage-check.ts) that advances or fails the job
 * under the job row lock once this transaction has committed.
 */
export async function followSettledTasks(db: Queryable, settled: readonly SettledTask[]): Promise<AfterCommit> {
  type Group = { jobId: string; stage: number; completed: number; failed: number; firstError?: ErrorShape };
  const groups = new Map<string, Group>();
  const intents: OutboxIntent[] = [];
  const stageChecks: StageCheck[] = [];
  // A commit's rows are nearly always of one stage: the key is built only when the stage changes.
  let last: Group | undefined;
  for (const row of settled) {
    if (row.status === 'QUEUED') {
      // A retry: not counted; its next attempt is a scheduled message (remote tasks are polled).
      if (!row.remote) {
        const message = { taskId: row.task_id, jobId: row.job_id, stage: row.stage, taskType: row.task_type, attempt: row.attempt + 1 };
        intents.push({ kind: 'task', jobId: row.job_id, message, ...(row.retry_at ? { notBefore: row.retry_at } : {}) });
      }
      continue;
    }
    let group = last;
    if (group?.jobId !== row.job_id || group.stage !== row.stage) {
      const key = `${row.job_id}\u0000${String(row.stage).padStart(6, '0')}`;
      group = groups.get(key) ?? { jobId: row.job_id, stage: row.stage, completed: 0, failed: 0 };
      groups.set(key, group);
      last = group;
    }
    if (row.status === 'FAILED') {
      group.failed++;
      group.firstError ??= row.error ?? undefined;
    } else group.completed++;
  }
  for (const key of [...groups.keys()].sort()) {
    const group = groups.get(key);
    if (!group) continue;
    const stageRow = await countStageResults(db, group.jobId, group.stage, group.completed, group.failed);
    // Past the stage's tolerance (0 for fail fast) the job fails with the error that tipped it.
    if (stageNeedsCheck(stageRow, group.firstError !== undefined)) {
      stageChecks.push({ jobId: group.jobId, stage: group.stage, ...(group.firstError ? { firstError: group.firstError } : {}) });
    } else if (stageRow.status === 'PROCESSING') {
      stageChecks.push({ jobId: group.jobId, stage: group.stage, probe: true, ...(group.firstError ? { firstError: group.firstError } : {}) });
    }
  }
  return afterCommit({ intents, stageChecks });
}
