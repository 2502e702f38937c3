import { TASK_LOG_LIMITS, TaskLogsQuery, type TaskLogPage } from '../../models';
import type { Queryable } from '../db/pool';
import { parseOrThrow, TaskNotFoundError } from '../errors';
import { dropOldestJobLogs, findTaskLogCounts, insertTaskLogs, listTaskLogs, type SettledTaskLogs } from '../state/task-logs-store';
import type { SettledTask, TaskOutcome } from '../state/tasks-store';

/**
 * Writes what the settled attempts logged, in the transaction that settled them: a failed or
 * retried attempt keeps its lines, and an outcome fenced off (its claim no longer current) writes
 * none, as it changes nothing else. No statement at all when no outcome logged. A job past its cap
 * loses its oldest lines, counted, in the same transaction.
 */
export async function recordTaskLogs(db: Queryable, outcomes: readonly TaskOutcome[], settled: readonly SettledTask[]): Promise<void> {
  let logged: TaskOutcome[] | undefined;
  for (const outcome of outcomes) if (outcome.logs) (logged ??= []).push(outcome);
  if (!logged) return;
  const attempts = new Map(settled.map((row) => [row.task_id, row.attempt]));
  const batches: SettledTaskLogs[] = [];
  for (const outcome of logged) {
    const attempt = attempts.get(outcome.taskId);
    if (attempt === undefined || !outcome.logs) continue;
    // One batch per settled task: its row was settled once, by one of the outcomes.
    attempts.delete(outcome.taskId);
    batches.push({ taskId: outcome.taskId, jobId: outcome.jobId, attempt, logs: outcome.logs });
  }
  for (const job of await insertTaskLogs(db, batches)) {
    if (job.lines > TASK_LOG_LIMITS.linesPerJob) await dropOldestJobLogs(db, job.job_id, job.lines - TASK_LOG_LIMITS.linesPerJob);
  }
}

/**
 * GET jobs/{jobId}/tasks/{taskId}/logs: a page of the task's lines in the order they were written,
 * with what its attempts and its job dropped. A task the job does not have is a TaskNotFoundError.
 */
export async function readTaskLogs(db: Queryable, jobId: string, taskId: string, query: unknown): Promise<TaskLogPage> {
  const { afterSeq, limit } = parseOrThrow(TaskLogsQuery, query, 'task log query');
  const counts = await findTaskLogCounts(db, jobId, taskId);
  if (!counts) throw new TaskNotFoundError(taskId);
  const rows = counts.recorded > afterSeq ? await listTaskLogs(db, taskId, afterSeq, limit) : [];
  const last = rows.at(-1);
  return {
    jobId,
    taskId,
    lines: rows.map((row) => ({
      seq: row.seq,
      attempt: row.attempt,
      level: row.level,
      message: row.message,
      fields: row.fields ?? null,
      loggedAt: row.logged_at,
    })),
    recorded: counts.recorded,
    dropped: counts.dropped,
    jobDropped: counts.job_dropped,
    nextAfterSeq: rows.length === limit && last && last.seq < counts.recorded ? last.seq : null,
  };
}
