import type { RerunEventDetail, TaskStatus } from '../../models';
import type { Queryable } from '../db/pool';
import type { StageRow } from './rows';

/**
 * The SQL of a targeted re-run (core/engine/rerun.ts). Every statement runs in the re-run's one
 * transaction, after the job's row lock: the job has ended, so nothing else changes its tasks or
 * stages meanwhile, and locks are taken in the engine's order, job → tasks (by id) → stages.
 */

export interface RerunSelection {
  jobId: string;
  stage: number;
  taskIds: readonly string[] | null;
  status: 'COMPLETED' | 'FAILED' | null;
  /** The result field's path, one element per field name, and the JSON it must equal. */
  resultPath: readonly string[] | null;
  resultEquals: unknown;
  limit: number;
}

/**
 * The finished tasks of the stage that the selection chooses, in task order, at most `limit`.
 * Unnamed on purpose (as listJobs): planned with its values, a filter not given folds away and the
 * ids, when given, are found through the primary key instead of a walk of the stage.
 */
export async function selectRerunTasks(db: Queryable, selection: RerunSelection): Promise<Array<{ task_id: string; status: TaskStatus }>> {
  const result = await db.query<{ task_id: string; status: TaskStatus }>(
    `SELECT t.task_id, t.status FROM coremachine.tasks t
      WHERE t.job_id = $1 AND t.stage = $2 AND t.status IN ('COMPLETED', 'FAILED')
        AND ($3::text[] IS NULL OR t.task_id = ANY($3::text[]))
        AND ($4::text IS NULL OR t.status = $4)
        AND ($5::text[] IS NULL OR t.result #> $5::text[] = $6::jsonb)
      ORDER BY t.task_index LIMIT $7`,
    [
      selection.jobId,
      selection.stage,
      selection.taskIds,
      selection.status,
      selection.resultPath,
      selection.resultPath === null ? null : JSON.stringify(selection.resultEquals ?? null),
      selection.limit,
    ],
  );
  return result.rows;
}

/** Of these ids, the ones that are not tasks of that stage of the job. */
export async function taskIdsNotInStage(db: Queryable, jobId: string, stage: number, taskIds: readonly string[]): Promise<string[]> {
  const result = await db.query<{ task_id: string }>({
    name: 'cm_rerun_ids_not_in_stage',
    // Joined on the task id alone: by the primary key, whatever the plan (filtering the join by job
    // and stage let a plan walk the whole stage once per id).
    text: `SELECT w.task_id FROM unnest($3::text[]) WITH ORDINALITY AS w(task_id, ord)
             LEFT JOIN coremachine.tasks t ON t.task_id = w.task_id
            WHERE t.task_id IS NULL OR t.job_id <> $1 OR t.stage <> $2
            ORDER BY w.ord`,
    values: [jobId, stage, [...taskIds]],
  });
  return result.rows.map((row) => row.task_id);
}

/** The stage's tasks that never finished (cancelled when its job failed), and those whose result is in the payload store. */
export async function stageLeftovers(db: Queryable, jobId: string, stage: number): Promise<{ unfinished: number; stored: number }> {
  const result = await db.query<{ unfinished: number; stored: number }>({
    name: 'cm_rerun_stage_leftovers',
    text: `SELECT count(*) FILTER (WHERE status = 'CANCELLED')::int AS unfinished, count(*) FILTER (WHERE result_ref IS NOT NULL)::int AS stored
             FROM coremachine.tasks WHERE job_id = $1 AND stage = $2`,
    values: [jobId, stage],
  });
  return result.rows[0] ?? { unfinished: 0, stored: 0 };
}

/**
 * The chosen tasks and the stage's cancelled ones back to QUEUED, their results and errors
 * cleared, locked in task_id order. The attempt is kept: the next claim is attempt + 1, so message
 * ids and the event trail of the new run are its own. Returns what each task was and the key of a
 * result it had in the payload store (deleted once nothing can write that blob again).
 */
export async function requeueRerunTasks(
  db: Queryable,
  jobId: string,
  stage: number,
  taskIds: readonly string[],
): Promise<Array<{ was: TaskStatus; result_key: string | null }>> {
  const result = await db.query<{ was: TaskStatus; result_key: string | null }>({
    name: 'cm_rerun_requeue_tasks',
    text: `WITH old AS MATERIALIZED (
             SELECT task_id, status, result_ref FROM coremachine.tasks
              WHERE job_id = $1 AND stage = $2 AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')
                AND (task_id = ANY($3::text[]) OR status = 'CANCELLED')
              ORDER BY task_id FOR UPDATE)
           UPDATE coremachine.tasks t SET status = 'QUEUED', result = NULL, result_ref = NULL, error = NULL,
                  started_at = NULL, finished_at = NULL, retry_at = NULL, claim_id = NULL, lease_expires_at = NULL, worker_id = NULL
             FROM old WHERE t.task_id = old.task_id
           RETURNING old.status AS was, old.result_ref->>'key' AS result_key`,
    values: [jobId, stage, [...taskIds]],
  });
  return result.rows;
}

/**
 * The stage runs again: PROCESSING, its counts less the tasks that were re-queued (shards folded
 * in first, as a finished stage keeps none), so it completes only when they have. The row's CHECKs
 * (counts never below zero) refuse uncounting twice. Null when the stage was not finished.
 */
export async function reopenStageForRerun(
  db: Queryable,
  jobId: string,
  stage: number,
  uncount: { completed: number; failed: number },
): Promise<StageRow | null> {
  const result = await db.query<StageRow>({
    name: 'cm_rerun_reopen_stage',
    text: `WITH gone AS (DELETE FROM coremachine.stage_counts WHERE job_id = $1 AND stage = $2 RETURNING completed, failed)
           UPDATE coremachine.stages SET status = 'PROCESSING', finished_at = NULL,
                  completed = completed + COALESCE((SELECT sum(completed) FROM gone), 0) - $3,
                  failed = failed + COALESCE((SELECT sum(failed) FROM gone), 0) - $4
            WHERE job_id = $1 AND stage = $2 AND status IN ('COMPLETED', 'FAILED') AND NOT creating
           RETURNING *`,
    values: [jobId, stage, uncount.completed, uncount.failed],
  });
  return result.rows[0] ?? null;
}

/**
 * The stages after `stage` are recomputed: their tasks and stage rows (with their counter shards)
 * deleted, and the signals their waiting stages received, which must be given again for the new
 * results. Their events and task log lines stay: the trail of the run they replaced. Returns the
 * payload store keys the deleted tasks referenced.
 */
export async function deleteStagesAfter(db: Queryable, jobId: string, stage: number): Promise<{ tasks: number; stages: number; keys: string[] }> {
  const tasks = await db.query<{ tasks: number; keys: string[] }>({
    name: 'cm_rerun_delete_later_tasks',
    text: `WITH gone AS (DELETE FROM coremachine.tasks WHERE job_id = $1 AND stage > $2 RETURNING result_ref, parameters_ref)
           SELECT (SELECT count(*) FROM gone)::int AS tasks,
                  COALESCE((SELECT array_agg(r.ref->>'key') FROM gone, LATERAL (VALUES (gone.result_ref), (gone.parameters_ref)) AS r(ref)
                             WHERE r.ref IS NOT NULL), '{}') AS keys`,
    values: [jobId, stage],
  });
  const stages = await db.query({
    name: 'cm_rerun_delete_later_stages',
    text: 'DELETE FROM coremachine.stages WHERE job_id = $1 AND stage > $2',
    values: [jobId, stage],
  });
  await db.query({ name: 'cm_rerun_delete_later_signals', text: 'DELETE FROM coremachine.signals WHERE job_id = $1 AND stage > $2', values: [jobId, stage] });
  const row = tasks.rows[0];
  return { tasks: row?.tasks ?? 0, stages: stages.rowCount ?? 0, keys: row?.keys ?? [] };
}

/** The job's result and error cleared (finalize runs again) and its re-runs counted; returns the new count. */
export async function resetJobForRerun(db: Queryable, jobId: string): Promise<number> {
  const result = await db.query<{ reruns: number }>({
    name: 'cm_rerun_reset_job',
    text: 'UPDATE coremachine.jobs SET result = NULL, result_ref = NULL, error = NULL, reruns = reruns + 1 WHERE job_id = $1 RETURNING reruns',
    values: [jobId],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`job ${jobId} vanished under its row lock during a re-run`);
  return row.reruns;
}

/** The re-run's entry in the job's trail (migration 024), written in its transaction. */
export async function recordRerunEvent(
  db: Queryable,
  event: { jobId: string; stage: number; from: string; to: string; detail: RerunEventDetail },
): Promise<void> {
  await db.query({
    name: 'cm_rerun_record_event',
    text: `INSERT INTO coremachine.events (job_id, entity, stage, from_status, to_status, detail) VALUES ($1, 'rerun', $2, $3, $4, $5::jsonb)`,
    values: [event.jobId, event.stage, event.from, event.to, JSON.stringify(event.detail)],
  });
}
