import type { Queryable } from '../db/pool';
import { numberArray, textArray } from './pg-arrays';
import type { ClaimedTask } from './tasks-store';

/** A (priority class, fairness key) with tasks of one type ready to run, and how many of the key's tasks run now. */
export interface FairKeyLoad {
  rank: number;
  key: string;
  weight: number;
  running: number;
}

/**
 * The (class, key) pairs that have tasks of `taskType` ready, best class first (023_fair_share.sql).
 * A skip scan: one index probe per pair, however many tasks each has. `limit` bounds the pairs read
 * (a claim shares at most a batch of slots out, so more keys than that cannot all get one).
 */
export async function fairKeysWithReadyTasks(db: Queryable, taskType: string, limit: number): Promise<FairKeyLoad[]> {
  const result = await db.query<FairKeyLoad>({
    name: 'cm_fair_keys',
    text: `WITH RECURSIVE k(rank, key, weight) AS (
             (SELECT fair_rank, fair_key, fair_weight FROM coremachine.tasks
               WHERE fair_ready_type = $1 ORDER BY fair_rank, fair_key LIMIT 1)
             UNION ALL
             SELECT n.fair_rank, n.fair_key, n.fair_weight FROM k CROSS JOIN LATERAL (
               SELECT fair_rank, fair_key, fair_weight FROM coremachine.tasks
                WHERE fair_ready_type = $1 AND (fair_rank, fair_key) > (k.rank, k.key)
                ORDER BY fair_rank, fair_key LIMIT 1) n
           )
           SELECT k.rank::int AS rank, k.key, COALESCE(k.weight, 1)::int AS weight,
                  (SELECT count(*) FROM coremachine.tasks r WHERE r.fair_running_key = k.key)::int AS running
             FROM (SELECT * FROM k LIMIT $2) k`,
    values: [taskType, limit],
  });
  return result.rows;
}

/**
 * Claims up to `share.count[i]` ready tasks of `taskType` for each (class, key) pair, oldest first,
 * skipping rows another claim holds: a task whose job is not running its stage (paused, past a
 * deadline, moved on) or whose retry is not due stays where it is. Every claim is a new attempt.
 */
export async function claimFairTasks(
  db: Queryable,
  taskType: string,
  share: { ranks: readonly number[]; keys: readonly string[]; counts: readonly number[] },
  leaseSeconds: number,
  /** At most this many in all (the pairs' counts may add up to more when they are a second pass's). */
  total: number,
  /** The claiming host (core/engine/host-presence.ts). */
  workerId: string | null,
): Promise<ClaimedTask[]> {
  if (share.keys.length === 0 || total <= 0) return [];
  const result = await db.query<ClaimedTask>({
    name: 'cm_claim_fair_tasks',
    text: `WITH picked AS (
             SELECT c.task_id FROM unnest($2::int[], $3::text[], $4::int[]) AS a(rank, key, n)
             CROSS JOIN LATERAL (
               SELECT t.task_id FROM coremachine.tasks t
                WHERE t.fair_ready_type = $1 AND t.fair_rank = a.rank AND t.fair_key = a.key
                  AND (t.retry_at IS NULL OR t.retry_at <= now())
                  AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage
                              AND COALESCE(LEAST(j.deadline_at, j.stage_deadline_at) > now(), true)
                         FROM coremachine.jobs j WHERE j.job_id = t.job_id)
                ORDER BY t.created_at, t.task_id
                LIMIT a.n
                FOR UPDATE OF t SKIP LOCKED) c
             LIMIT $6
           )
           UPDATE coremachine.tasks t SET
             status = 'PROCESSING', attempt = t.attempt + 1, claim_id = gen_random_uuid(),
             -- A task in the fair-share scheme has no slot key (tasks-store.ts, insertTasks): it takes no slot.
             lease_expires_at = now() + make_interval(secs => $5), started_at = now(), worker_id = $7, slot_claim = NULL
           -- An array, not a join: the update then finds each row by its primary key, never by a scan.
           WHERE t.task_id = ANY (ARRAY(SELECT task_id FROM picked)) AND t.status = 'QUEUED'
           RETURNING t.task_id, t.job_id, t.stage, t.task_index, t.task_type, t.parameters, t.parameters_ref, t.attempt, t.claim_id, t.limit_key`,
    values: [taskType, numberArray(share.ranks), textArray(share.keys), numberArray(share.counts), leaseSeconds, total, workerId],
  });
  return result.rows;
}
