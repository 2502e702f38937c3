import type { ErrorShape } from '../../models';
import type { Queryable } from '../db/pool';
import { settleTasks, type Settled, type TaskOutcome } from '../state/tasks-store';
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
 * Commits outcomes of claimed tasks in one statement (settleTasks): task rows (fenced by claim,
 * locked in task id order), then each stage's counter moved once by its k results, in a fixed
 * (job, stage) order so concurrent batches cannot deadlock. The job row is not locked here: many
 * instances committing results of one job would queue on it. What the job must do next runs as a
 * stage check after the commit.
 */
export async function recordTaskOutcomes(db: Queryable, outcomes: readonly TaskOutcome[]): Promise<{ settled: Set<string>; after: AfterCommit }> {
  const settled = await settleTasks(db, outcomes);
  const after = followSettledTasks(settled);
  // What the attempts logged goes with their outcomes; no statement when none did.
  await recordTaskLogs(db, outcomes, settled.tasks);
  return { settled: new Set(settled.tasks.map((row) => row.task_id)), after };
}

/**
 * Whether recording these outcomes is one statement (the settle, with its count): so when none
 * is a retry (whose next message is an outbox row) and none logged (task log rows). The unit of
 * work then runs it without BEGIN and COMMIT (core/db/pool.ts, `singleStatement`), which refuses a
 * second statement should this ever disagree with recordTaskOutcomes and followSettledTasks.
 */
export function recordsInOneStatement(outcomes: readonly TaskOutcome[]): boolean {
  for (const outcome of outcomes) if (outcome.retryAt !== undefined || outcome.logs !== undefined) return false;
  return true;
}

/**
 * What every settled task leads to, whoever settled it: retries become scheduled messages;
 * results move their stage's counters; a stage counted to its total, or past its failure
 * tolerance, gets a stage check (core/engine/stage-check.ts) that advances or fails the job
 * under the job row lock once this transaction has committed.
 */
export function followSettledTasks(settled: Settled): AfterCommit {
  const intents: OutboxIntent[] = [];
  // Each stage's first error: the one a job failed by its tolerance reports. Failures are rare.
  const firstErrors = new Map<string, ErrorShape>();
  for (const row of settled.tasks) {
    if (row.status === 'QUEUED') {
      // A retry: not counted; its next attempt is a scheduled message (remote tasks are polled).
      if (!row.remote) {
        const message = { taskId: row.task_id, jobId: row.job_id, stage: row.stage, taskType: row.task_type, attempt: row.attempt + 1 };
        intents.push({ kind: 'task', jobId: row.job_id, message, ...(row.retry_at ? { notBefore: row.retry_at } : {}) });
      }
    } else if (row.status === 'FAILED' && row.error) {
      const key = stageKey(row.job_id, row.stage);
      if (!firstErrors.has(key)) firstErrors.set(key, row.error);
    }
  }
  const stageChecks: StageCheck[] = [];
  for (const stage of settled.stages) {
    const firstError = firstErrors.size === 0 ? undefined : firstErrors.get(stageKey(stage.job_id, stage.stage));
    // Past the stage's tolerance (0 for fail fast) the job fails with the error that tipped it.
    if (stageNeedsCheck(stage, firstError !== undefined)) {
      stageChecks.push({ jobId: stage.job_id, stage: stage.stage, ...(firstError ? { firstError } : {}) });
    } else if (stage.status === 'PROCESSING') {
      stageChecks.push({ jobId: stage.job_id, stage: stage.stage, probe: true, ...(firstError ? { firstError } : {}) });
    }
  }
  return afterCommit({ intents, stageChecks });
}

function stageKey(jobId: string, stage: number): string {
  return `${jobId}\u0000${stage}`;
}
