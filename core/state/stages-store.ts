import type { StageStatus } from '../../models';
import type { Queryable } from '../db/pool';
import type { StageRow } from './rows';

/**
 * A stage's counts live in its row and in its shard rows (migration 014): a commit adds to the
 * shard of its backend, so commits from many connections do not queue on one row. Every read of
 * a stage adds the two; these columns come back from the queries below and are folded here.
 */
const SHARD_SUMS = `LEFT JOIN LATERAL (SELECT COALESCE(sum(c.completed), 0)::int AS shard_completed, COALESCE(sum(c.failed), 0)::int AS shard_failed
                     FROM coremachine.stage_counts c WHERE c.job_id = s.job_id AND c.stage = s.stage) sums ON true`;

/** Shards per stage: enough that 64 connections rarely share one, few enough to sum in one page. */
const SHARDS = 16;

type WithShardSums = StageRow & { shard_completed: number; shard_failed: number };

function withShardSums({ shard_completed, shard_failed, ...row }: WithShardSums): StageRow {
  return { ...row, completed: row.completed + shard_completed, failed: row.failed + shard_failed };
}

export async function insertStage(db: Queryable, stage: { jobId: string; stage: number; name: string; total: number; maxFailures: number }): Promise<StageRow> {
  const result = await db.query<StageRow>({
    name: 'cm_insert_stage',
    text: `INSERT INTO coremachine.stages (job_id, stage, name, status, total, max_failures)
           VALUES ($1, $2, $3, 'PROCESSING', $4, $5) RETURNING *`,
    values: [stage.jobId, stage.stage, stage.name, stage.total, stage.maxFailures],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`stage ${stage.stage} of job ${stage.jobId} was not inserted`);
  return row;
}

/** A stage whose tasks are about to be created in chunks: nothing created, one place held open. */
export async function insertCreatingStage(db: Queryable, stage: { jobId: string; stage: number; name: string; maxFailures: number }): Promise<StageRow> {
  const result = await db.query<StageRow>({
    name: 'cm_insert_creating_stage',
    text: `INSERT INTO coremachine.stages (job_id, stage, name, status, total, max_failures, creating, created)
           VALUES ($1, $2, $3, 'PROCESSING', 1, $4, true, 0) RETURNING *`,
    values: [stage.jobId, stage.stage, stage.name, stage.maxFailures],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`stage ${stage.stage} of job ${stage.jobId} was not inserted`);
  return row;
}

/**
 * Records a committed chunk by compare-and-set on the count created so far: null when another
 * delivery got there first, the stage stopped, or its job is no longer PROCESSING at this stage
 * (paused, cancelled, failed). `last` sets the real total and failure tolerance and ends creation.
 */
export async function recordStageChunk(
  db: Queryable,
  chunk: { jobId: string; stage: number; fromIndex: number; count: number; digest: string; last?: { maxFailures: number } },
): Promise<StageRow | null> {
  const result = await db.query<WithShardSums>({
    name: 'cm_record_stage_chunk',
    text: `WITH s AS (
             UPDATE coremachine.stages s SET
               created = s.created + $4, fan_out_digest = $5,
               creating = NOT $6, total = CASE WHEN $6 THEN s.created + $4 ELSE s.created + $4 + 1 END,
               max_failures = CASE WHEN $6 THEN $7 ELSE s.max_failures END
             WHERE s.job_id = $1 AND s.stage = $2 AND s.creating AND s.created = $3 AND s.status = 'PROCESSING'
               AND EXISTS (SELECT 1 FROM coremachine.jobs j WHERE j.job_id = $1 AND j.status = 'PROCESSING' AND j.stage = $2)
             RETURNING *)
           SELECT s.*, sums.* FROM s ${SHARD_SUMS}`,
    values: [chunk.jobId, chunk.stage, chunk.fromIndex, chunk.count, chunk.digest, chunk.last !== undefined, chunk.last?.maxFailures ?? 0],
  });
  const row = result.rows[0];
  return row ? withShardSums(row) : null;
}

export async function findStage(db: Queryable, jobId: string, stage: number): Promise<StageRow | null> {
  const result = await db.query<WithShardSums>({
    name: 'cm_find_stage',
    text: `SELECT s.*, sums.* FROM coremachine.stages s ${SHARD_SUMS} WHERE s.job_id = $1 AND s.stage = $2`,
    values: [jobId, stage],
  });
  const row = result.rows[0];
  return row ? withShardSums(row) : null;
}

export async function listStages(db: Queryable, jobId: string): Promise<StageRow[]> {
  const result = await db.query<WithShardSums>({
    name: 'cm_list_stages',
    text: `SELECT s.*, sums.* FROM coremachine.stages s ${SHARD_SUMS} WHERE s.job_id = $1 ORDER BY s.stage`,
    values: [jobId],
  });
  return result.rows.map(withShardSums);
}

/**
 * The stage each job is at, for a page of the job list: one statement for the whole page, each stage
 * read by its primary key and its shards (at most 16) by theirs, so it costs about a page of index
 * lookups however many tasks the jobs have. A job whose current stage has not started has no row.
 */
export async function findCurrentStages(db: Queryable, jobs: ReadonlyArray<{ jobId: string; stage: number }>): Promise<StageRow[]> {
  if (jobs.length === 0) return [];
  const result = await db.query<WithShardSums>({
    name: 'cm_find_current_stages',
    text: `SELECT s.*, sums.* FROM unnest($1::text[], $2::int[]) AS page(job_id, stage)
             JOIN coremachine.stages s ON s.job_id = page.job_id AND s.stage = page.stage ${SHARD_SUMS}`,
    values: [jobs.map((job) => job.jobId), jobs.map((job) => job.stage)],
  });
  return result.rows.map(withShardSums);
}

/** A stage's counts as one settle sees them: what decides whether it calls for a stage check. */
export type StageCount = Pick<StageRow, 'job_id' | 'stage' | 'status' | 'total' | 'completed' | 'failed' | 'max_failures' | 'creating'>;

/**
 * The part of a settle statement (settleTasks) that counts its results: `settled` names a CTE of
 * (job_id, stage, status) rows, and this adds their completions and failures to this backend's
 * shard of each stage's counts, stages in (job, stage) order so concurrent settles cannot deadlock
 * on shared shards (a shard row references its stage, so results of a stage that does not exist
 * fail the statement). It defines `stage_counts_seen`: per stage, a JSON StageCount with the counts
 * this statement can see: the committed shards of others plus its own. Concurrent commits do not
 * see each other, so a commit whose view does not reach the total reads the counts again after it
 * commits (core/engine/stage-check.ts).
 */
export function countSettledResultsOf(settled: string): string {
  // The statement's snapshot does not see its own upsert: its shard is added from RETURNING.
  return `settled_results AS (
             SELECT job_id, stage, count(*) FILTER (WHERE status = 'COMPLETED')::int AS completed, count(*) FILTER (WHERE status = 'FAILED')::int AS failed
               FROM ${settled} WHERE status IN ('COMPLETED', 'FAILED') GROUP BY job_id, stage),
           mine AS (
             INSERT INTO coremachine.stage_counts AS c (job_id, stage, shard, completed, failed)
             SELECT job_id, stage, pg_backend_pid() % ${SHARDS}, completed, failed FROM settled_results ORDER BY job_id, stage
             ON CONFLICT (job_id, stage, shard) DO UPDATE SET completed = c.completed + EXCLUDED.completed, failed = c.failed + EXCLUDED.failed
             RETURNING c.job_id, c.stage, c.shard, c.completed, c.failed),
           stage_counts_seen AS (
             SELECT json_build_object('job_id', mine.job_id, 'stage', mine.stage, 'status', s.status, 'total', s.total,
                      'completed', s.completed + mine.completed + others.completed, 'failed', s.failed + mine.failed + others.failed,
                      'max_failures', s.max_failures, 'creating', s.creating) AS stage_count
               FROM mine JOIN coremachine.stages s ON s.job_id = mine.job_id AND s.stage = mine.stage,
                    LATERAL (SELECT COALESCE(sum(o.completed), 0)::int AS completed, COALESCE(sum(o.failed), 0)::int AS failed
                               FROM coremachine.stage_counts o WHERE o.job_id = mine.job_id AND o.stage = mine.stage AND o.shard <> mine.shard) others)`;
}

/** Compare-and-set on the stage's own status. */
export async function finishStage(db: Queryable, jobId: string, stage: number, from: StageStatus, to: StageStatus): Promise<StageRow | null> {
  const result = await db.query<StageRow>({
    name: 'cm_finish_stage',
    // The shards are folded into the finished stage's row (only if the compare-and-set applies:
    // the row is locked and re-checked first), so the row's CHECK judges the final counts and a
    // finished stage keeps no shard rows.
    text: `WITH target AS (SELECT 1 FROM coremachine.stages WHERE job_id = $1 AND stage = $2 AND status = $3 FOR NO KEY UPDATE),
                gone AS (DELETE FROM coremachine.stage_counts WHERE job_id = $1 AND stage = $2 AND EXISTS (SELECT 1 FROM target) RETURNING completed, failed)
           UPDATE coremachine.stages SET status = $4, finished_at = GREATEST(now(), started_at),
                  completed = completed + COALESCE((SELECT sum(completed) FROM gone), 0),
                  failed = failed + COALESCE((SELECT sum(failed) FROM gone), 0)
           WHERE job_id = $1 AND stage = $2 AND status = $3 RETURNING *`,
    values: [jobId, stage, from, to],
  });
  return result.rows[0] ?? null;
}

/** Cancel: the job's running stages CANCELLED (finished_at never before started_at). */
export async function cancelOpenStages(db: Queryable, jobId: string): Promise<void> {
  await db.query({
    name: 'cm_cancel_job_stages',
    text: `UPDATE coremachine.stages SET status = 'CANCELLED', finished_at = GREATEST(now(), started_at) WHERE job_id = $1 AND status = 'PROCESSING'`,
    values: [jobId],
  });
}

/**
 * Operator retry of a stage: one whose fan-out failed (FAILED, no tasks) is forgotten so the
 * fan-out runs again; otherwise its failures are uncounted by `failedAgain` and it runs again.
 */
export async function reopenStage(db: Queryable, jobId: string, stage: number, failedAgain: number): Promise<void> {
  await db.query({
    name: 'cm_retry_forget_empty_failed_stage',
    text: `DELETE FROM coremachine.stages s WHERE job_id = $1 AND stage = $2 AND status = 'FAILED' AND total = 0
             AND NOT EXISTS (SELECT 1 FROM coremachine.tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage)`,
    values: [jobId, stage],
  });
  await db.query({
    name: 'cm_retry_reopen_stage',
    // Shards folded in first: the failures to uncount may sit in any of them.
    text: `WITH gone AS (DELETE FROM coremachine.stage_counts WHERE job_id = $1 AND stage = $2 RETURNING completed, failed)
           UPDATE coremachine.stages SET
             completed = completed + COALESCE((SELECT sum(completed) FROM gone), 0),
             failed = failed + COALESCE((SELECT sum(failed) FROM gone), 0) - $3,
             status = CASE WHEN status = 'FAILED' THEN 'PROCESSING' ELSE status END, finished_at = NULL
           WHERE job_id = $1 AND stage = $2`,
    values: [jobId, stage, failedAgain],
  });
}

/** Failed tasks the job's stages counted, all stages together. */
export async function countFailedOfJob(db: Queryable, jobId: string): Promise<number> {
  const result = await db.query<{ failed: number }>({
    name: 'cm_failed_count_of_job',
    text: `SELECT (COALESCE((SELECT sum(failed) FROM coremachine.stages WHERE job_id = $1), 0)
                  + COALESCE((SELECT sum(failed) FROM coremachine.stage_counts WHERE job_id = $1), 0))::int AS failed`,
    values: [jobId],
  });
  return result.rows[0]?.failed ?? 0;
}
