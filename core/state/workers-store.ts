import type { WorkerKind } from '../../models/workers';
import type { Queryable } from '../db/pool';
import { textArray } from './pg-arrays';

/**
 * The workers view (migration 022): who takes work, written by time and never per task. The
 * callers coalesce in memory; the `WHERE last_… < now() - interval` here coalesces across the
 * instances sharing the database, so a worker polling every instance at once is still one write
 * per interval.
 */

export interface WorkerRow {
  kind: WorkerKind;
  worker_id: string;
  task_types: string[];
  host: string | null;
  first_seen_at: Date;
  last_claim_at: Date | null;
  last_heartbeat_at: Date;
  /** By the database's clock, as every time in the row: app hosts' clocks may disagree. */
  heartbeat_age_seconds: number;
  tasks_held: number;
}

/** A remote worker's claim request: its row made, or refreshed unless it was less than `minSeconds` ago with the same task types. */
export async function recordRemoteClaim(db: Queryable, worker: { workerId: string; taskTypes: readonly string[] }, minSeconds: number): Promise<void> {
  await db.query({
    name: 'cm_record_remote_claim',
    text: `INSERT INTO coremachine.workers AS w (kind, worker_id, task_types, last_claim_at, last_heartbeat_at)
           VALUES ('remote', $1, $2::text[], now(), now())
           ON CONFLICT (kind, worker_id) DO UPDATE SET task_types = EXCLUDED.task_types, last_claim_at = now(), last_heartbeat_at = now()
            WHERE w.last_claim_at IS NULL OR w.last_claim_at < now() - make_interval(secs => $3::float8) OR w.task_types <> EXCLUDED.task_types`,
    values: [worker.workerId, textArray(worker.taskTypes), minSeconds],
  });
}

/**
 * A remote worker's heartbeat or report: its row's last heartbeat, unless less than `minSeconds`
 * old. Only a claim makes a row: it is what names the worker's task types.
 */
export async function recordRemoteHeartbeat(db: Queryable, workerId: string, minSeconds: number): Promise<void> {
  await db.query({
    name: 'cm_record_remote_heartbeat',
    text: `UPDATE coremachine.workers SET last_heartbeat_at = now()
            WHERE kind = 'remote' AND worker_id = $1 AND last_heartbeat_at < now() - make_interval(secs => $2::float8)`,
    values: [workerId, minSeconds],
  });
}

/** An in-process host's periodic heartbeat, with the time of its last batch that claimed tasks (kept in memory until now). */
export async function recordHostHeartbeat(
  db: Queryable,
  host: { workerId: string; taskTypes: readonly string[]; host: string; lastClaimAt: Date | null },
): Promise<void> {
  await db.query({
    name: 'cm_record_host_heartbeat',
    text: `INSERT INTO coremachine.workers AS w (kind, worker_id, task_types, host, last_claim_at, last_heartbeat_at)
           VALUES ('in-process', $1, $2::text[], $3, $4, now())
           ON CONFLICT (kind, worker_id) DO UPDATE SET task_types = EXCLUDED.task_types, host = EXCLUDED.host,
                  last_claim_at = GREATEST(w.last_claim_at, EXCLUDED.last_claim_at), last_heartbeat_at = now()`,
    values: [host.workerId, textArray(host.taskTypes), host.host, host.lastClaimAt],
  });
}

/** A host that stopped cleanly leaves the view at once instead of going stale. */
export async function removeWorker(db: Queryable, kind: WorkerKind, workerId: string): Promise<void> {
  await db.query({ name: 'cm_remove_worker', text: 'DELETE FROM coremachine.workers WHERE kind = $1 AND worker_id = $2', values: [kind, workerId] });
}

/** Workers not heard from for `olderThanSeconds`, at most `limit` of them per call, deleted. */
export async function pruneStaleWorkers(db: Queryable, olderThanSeconds: number, limit: number): Promise<number> {
  const result = await db.query({
    name: 'cm_prune_stale_workers',
    text: `DELETE FROM coremachine.workers WHERE (kind, worker_id) IN (
             SELECT kind, worker_id FROM coremachine.workers WHERE last_heartbeat_at < now() - make_interval(secs => $1::float8) LIMIT $2)`,
    values: [olderThanSeconds, limit],
  });
  return result.rowCount ?? 0;
}

/**
 * Every worker with the tasks it holds now: the PROCESSING tasks whose worker_id names it (a
 * remote worker's are remote tasks, a host's are not). As the janitor's lease check, only the
 * current stage of jobs that can have running tasks is read, through the (job_id, stage,
 * task_index) index: there is no index on status or worker_id, so claims and settles stay HOT
 * updates (migration 015).
 */
export async function listWorkers(db: Queryable, limit: number): Promise<WorkerRow[]> {
  const result = await db.query<WorkerRow>({
    name: 'cm_list_workers',
    text: `WITH held AS (
             SELECT t.worker_id, t.remote, count(*)::int AS tasks_held
               FROM coremachine.jobs j JOIN coremachine.tasks t ON t.job_id = j.job_id AND t.stage = j.stage
              WHERE j.status IN ('QUEUED','PROCESSING','PAUSED') AND t.status = 'PROCESSING' AND t.worker_id IS NOT NULL
              GROUP BY t.worker_id, t.remote)
           SELECT w.kind, w.worker_id, w.task_types, w.host, w.first_seen_at, w.last_claim_at, w.last_heartbeat_at,
                  extract(epoch FROM now() - w.last_heartbeat_at)::float8 AS heartbeat_age_seconds, COALESCE(h.tasks_held, 0) AS tasks_held
             FROM coremachine.workers w LEFT JOIN held h ON h.worker_id = w.worker_id AND h.remote = (w.kind = 'remote')
            ORDER BY w.kind, w.worker_id LIMIT $1`,
    values: [limit],
  });
  return result.rows;
}
