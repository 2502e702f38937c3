import type { TaskLogLevel } from '../../models';
import type { Queryable } from '../db/pool';
import { jsonArray, numberArray, textArray, timestampArray } from './pg-arrays';

/** Task logs (migration 021): lines written with their attempt's outcome, read a task at a time. */

/** One line as the engine buffered it: bounded and storable already (core/engine/task-log-buffer.ts). */
export interface TaskLogEntry {
  level: TaskLogLevel;
  message: string;
  /** The fields as JSON text, or null. */
  fieldsJson: string | null;
  loggedAt: Date;
  /** UTF-8 bytes of message and fields: what the attempt's byte cap counts. */
  bytes: number;
}

/** What one attempt logged: its lines, oldest first, and how many older ones it dropped over its cap. */
export interface TaskLogBatch {
  lines: readonly TaskLogEntry[];
  dropped: number;
}

/** A batch of a settled attempt: the attempt is the task row's, as the settle returned it. */
export interface SettledTaskLogs {
  taskId: string;
  jobId: string;
  attempt: number;
  logs: TaskLogBatch;
}

/** Shards of a job's counts: as stage_counts (stages-store.ts), enough that 64 connections rarely share one. */
const SHARDS = 16;

/**
 * Records the lines of settled attempts in one statement: each task's count row gives its lines
 * their numbers (it is locked by the settle's task row lock already, so never contended), the
 * lines go in, and each job's shard of this backend counts them. Returns each job's lines as this
 * statement sees them (the committed shards of others plus its own), for the job's cap.
 */
export async function insertTaskLogs(db: Queryable, batches: readonly SettledTaskLogs[]): Promise<Array<{ job_id: string; lines: number }>> {
  if (batches.length === 0) return [];
  const lineTasks: string[] = [];
  const positions: number[] = [];
  const levels: string[] = [];
  const messages: string[] = [];
  const fields: Array<string | null> = [];
  const times: Date[] = [];
  for (const batch of batches) {
    batch.logs.lines.forEach((line, index) => {
      lineTasks.push(batch.taskId);
      positions.push(index + 1);
      levels.push(line.level);
      messages.push(line.message);
      fields.push(line.fieldsJson);
      times.push(line.loggedAt);
    });
  }
  const result = await db.query<{ job_id: string; lines: number }>({
    name: 'cm_insert_task_logs',
    // The statement's snapshot does not see its own upserts: a task's first number comes from its
    // count row's RETURNING, this shard's job count from its RETURNING (as the settle's count does, stages-store.ts).
    text: `WITH t AS MATERIALIZED (
             SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[]) AS t(task_id, job_id, attempt, n, dropped)),
           counted AS (
             INSERT INTO coremachine.task_log_counts AS c (task_id, job_id, lines, dropped)
             SELECT task_id, job_id, n, dropped FROM t ORDER BY task_id
             ON CONFLICT (task_id) DO UPDATE SET lines = c.lines + EXCLUDED.lines, dropped = c.dropped + EXCLUDED.dropped
             RETURNING c.task_id, c.lines),
           written AS (
             INSERT INTO coremachine.task_logs (task_id, seq, job_id, attempt, level, message, fields, logged_at)
             SELECT l.task_id, counted.lines - t.n + l.pos, t.job_id, t.attempt, l.level, l.message,
                    NULLIF($9::jsonb -> (l.ord::int - 1), 'null'::jsonb), l.logged_at
               FROM unnest($6::text[], $7::int[], $8::text[], $10::text[], $11::timestamptz[]) WITH ORDINALITY AS l(task_id, pos, level, message, logged_at, ord)
               JOIN t ON t.task_id = l.task_id JOIN counted ON counted.task_id = l.task_id
              ORDER BY l.ord),
           mine AS (
             INSERT INTO coremachine.job_log_counts AS c (job_id, shard, lines, dropped)
             SELECT job_id, pg_backend_pid() % ${SHARDS}, sum(n)::int, 0 FROM t GROUP BY job_id ORDER BY job_id
             ON CONFLICT (job_id, shard) DO UPDATE SET lines = c.lines + EXCLUDED.lines
             RETURNING c.job_id, c.shard, c.lines)
           SELECT mine.job_id, (mine.lines + COALESCE(others.lines, 0))::int AS lines
             FROM mine LEFT JOIN LATERAL (SELECT sum(o.lines) AS lines FROM coremachine.job_log_counts o
                                           WHERE o.job_id = mine.job_id AND o.shard <> mine.shard) others ON true`,
    values: [
      textArray(batches.map((b) => b.taskId)),
      textArray(batches.map((b) => b.jobId)),
      numberArray(batches.map((b) => b.attempt)),
      numberArray(batches.map((b) => b.logs.lines.length)),
      numberArray(batches.map((b) => b.logs.dropped)),
      textArray(lineTasks),
      numberArray(positions),
      textArray(levels),
      jsonArray(fields),
      textArray(messages),
      timestampArray(times),
    ],
  });
  return result.rows;
}

/**
 * Deletes up to `excess` of the job's oldest lines and counts them as dropped in this backend's
 * shard. Lines another commit is deleting are skipped rather than waited for: that commit counts them.
 */
export async function dropOldestJobLogs(db: Queryable, jobId: string, excess: number): Promise<number> {
  const result = await db.query<{ dropped: number }>({
    name: 'cm_drop_oldest_job_logs',
    text: `WITH victims AS (
             SELECT task_id, seq FROM coremachine.task_logs WHERE job_id = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED),
           gone AS (
             DELETE FROM coremachine.task_logs l USING victims v WHERE l.task_id = v.task_id AND l.seq = v.seq RETURNING 1),
           n AS (SELECT count(*)::int AS dropped FROM gone)
           UPDATE coremachine.job_log_counts c SET lines = c.lines - n.dropped, dropped = c.dropped + n.dropped
             FROM n WHERE c.job_id = $1 AND c.shard = pg_backend_pid() % ${SHARDS}
           RETURNING n.dropped`,
    values: [jobId, excess],
  });
  return result.rows[0]?.dropped ?? 0;
}

export interface TaskLogRow {
  seq: number;
  attempt: number;
  level: TaskLogLevel;
  message: string;
  fields: unknown;
  logged_at: Date;
}

/** One page of a task's lines in seq order, after `afterSeq`. */
export async function listTaskLogs(db: Queryable, taskId: string, afterSeq: number, limit: number): Promise<TaskLogRow[]> {
  const result = await db.query<TaskLogRow>({
    name: 'cm_list_task_logs',
    text: `SELECT seq, attempt, level, message, fields, logged_at FROM coremachine.task_logs
            WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
    values: [taskId, afterSeq, limit],
  });
  return result.rows;
}

/**
 * The task's log counts and its job's dropped lines, or null when the job has no such task. Zero
 * counts for a task that never logged.
 */
export async function findTaskLogCounts(
  db: Queryable,
  jobId: string,
  taskId: string,
): Promise<{ recorded: number; dropped: number; job_dropped: number } | null> {
  const result = await db.query<{ recorded: number; dropped: number; job_dropped: number }>({
    name: 'cm_find_task_log_counts',
    text: `SELECT COALESCE(c.lines, 0) AS recorded, COALESCE(c.dropped, 0) AS dropped,
                  (SELECT COALESCE(sum(j.dropped), 0)::int FROM coremachine.job_log_counts j WHERE j.job_id = $1) AS job_dropped
             FROM coremachine.tasks t LEFT JOIN coremachine.task_log_counts c ON c.task_id = t.task_id
            WHERE t.task_id = $2 AND t.job_id = $1`,
    values: [jobId, taskId],
  });
  return result.rows[0] ?? null;
}
