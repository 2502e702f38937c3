import type { Queryable } from '../db/pool';
import type { TaskRow } from './rows';
import { addToTallies } from './limit-slots-sql';
import { numberArray, textArray } from './pg-arrays';
import type { ClaimedTask } from './tasks-store';

/**
 * Global concurrency and rate limits (migration 011). A key's slots held are the sum of its
 * tallies (029_limit_slot_tallies.sql), one per key and database session: the statement that
 * claims tasks with a slot key adds them to its session's tally, and the statement that moves a
 * task out of PROCESSING takes it off its own session's tally (core/state/limit-slots-sql.ts).
 * The janitor checks the sums against the running tasks (reconcileSlotTallies). What needs care
 * is the claim: "count the holders, then claim up to the free slots" is a read-then-write, so every
 * claim of a key holds a transaction-scoped advisory lock on the key while it counts and claims.
 * The lock is taken in its own statement, before the count: under READ COMMITTED the count's
 * snapshot is then taken after the previous holder of the lock committed, so it sees that holder's
 * claims. Transaction-scoped, so nothing outlives the transaction (PgBouncer in transaction mode is
 * fine, no session lock can leak to the pool). Nothing waits for this lock while holding a task row
 * lock, so it cannot deadlock with settles.
 */

/** Serialises the claims of one slot key until the transaction ends (a hash collision only serialises two keys). */
export async function lockLimitKey(db: Queryable, limitKey: string): Promise<void> {
  // The transaction's commit also stops waiting for its WAL flush (set_config(…, true) is SET
  // LOCAL): it holds the key's lock until it commits, so a synchronous commit would make every
  // claim of a key wait out the flush of the one before it, one flush per claim where unlimited
  // claims share them. A crash of PostgreSQL itself can lose the last fraction of a second of
  // claims: their tasks are QUEUED again, their handlers' results are fenced off by claim id and
  // the janitor sends the tasks again (at-least-once, as after a lost lease); until then those
  // handlers run outside the count, so a key may briefly run more than its limit after such a crash.
  await db.query({
    name: 'cm_lock_limit_key',
    text: `SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || $1, 0))`,
    values: [limitKey],
  });
}

/** How many tasks hold a slot of the key now (an expired lease still holds it until the janitor requeues it). */
export async function countLimitHolders(db: Queryable, limitKey: string): Promise<number> {
  const result = await db.query<{ n: number }>({
    name: 'cm_count_limit_holders',
    text: `SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = $1`,
    values: [limitKey],
  });
  return result.rows[0]?.n ?? 0;
}

/**
 * Refills the key's token bucket by the time elapsed since it was last refilled and returns the
 * tokens available. clock_timestamp(), not now(): a claim that waited for the lock started its
 * transaction before the previous holder refilled, and now() would run the clock backwards.
 */
export async function refillRateBucket(db: Queryable, limitKey: string, perSecond: number, capacity: number): Promise<number> {
  const result = await db.query<{ tokens: number }>({
    name: 'cm_refill_rate_bucket',
    text: `INSERT INTO coremachine.task_rate_buckets AS b (limit_key, tokens, refilled_at) VALUES ($1, $3, clock_timestamp())
           ON CONFLICT (limit_key) DO UPDATE SET
             tokens = LEAST($3::float8, b.tokens + $2::float8 * GREATEST(0, extract(epoch FROM clock_timestamp() - b.refilled_at))),
             refilled_at = clock_timestamp()
           RETURNING tokens`,
    values: [limitKey, perSecond, capacity],
  });
  return result.rows[0]?.tokens ?? 0;
}

export async function spendRateTokens(db: Queryable, limitKey: string, tokens: number): Promise<void> {
  if (tokens === 0) return;
  await db.query({
    name: 'cm_spend_rate_tokens',
    text: `UPDATE coremachine.task_rate_buckets SET tokens = tokens - $2 WHERE limit_key = $1`,
    values: [limitKey, tokens],
  });
}

export type LimitedTaskState = Pick<TaskRow, 'task_id' | 'status' | 'attempt'> & {
  limit_key: string | null;
  lease_expired: boolean;
  /** The task's job is PROCESSING its stage: the claim could take it. */
  job_ready: boolean;
};

/** What a claim of limited tasks needs to know before it locks their keys (read without locks). */
export async function describeLimitedTasks(db: Queryable, taskIds: readonly string[]): Promise<LimitedTaskState[]> {
  if (taskIds.length === 0) return [];
  const result = await db.query<LimitedTaskState>({
    name: 'cm_describe_limited_tasks',
    text: `SELECT t.task_id, t.status, t.attempt, t.limit_key, COALESCE(t.lease_expires_at < now(), false) AS lease_expired,
                  COALESCE((SELECT j.status = 'PROCESSING' AND j.stage = t.stage FROM coremachine.jobs j WHERE j.job_id = t.job_id), false) AS job_ready
             FROM coremachine.tasks t WHERE t.task_id = ANY($1::text[])`,
    values: [taskIds],
  });
  return result.rows;
}

/**
 * The slot keys of remote tasks of a type waiting to be claimed (read without locks; a task
 * created before its type had limits has none and takes the scope's default key).
 */
export async function queuedRemoteLimitKeys(db: Queryable, taskType: string, defaultKey: string, limit: number): Promise<string[]> {
  const result = await db.query<{ limit_key: string }>({
    name: 'cm_queued_remote_limit_keys',
    text: `SELECT DISTINCT COALESCE(t.limit_key, $2) AS limit_key FROM coremachine.tasks t
            WHERE t.remote_queued_type = $1 AND (t.retry_at IS NULL OR t.retry_at <= now())
            ORDER BY 1 LIMIT $3`,
    values: [taskType, defaultKey, limit],
  });
  return result.rows.map((row) => row.limit_key);
}

export type WaitingTask = Pick<TaskRow, 'task_id' | 'job_id' | 'stage' | 'task_type' | 'attempt'>;

/** The key's oldest QUEUED queue tasks that could start now (their job runs their stage, no retry pending). */
export async function waitingTasksOfKey(db: Queryable, limitKey: string, limit: number): Promise<WaitingTask[]> {
  const result = await db.query<WaitingTask>({
    name: 'cm_waiting_tasks_of_key',
    // At random among the oldest 32: instances freeing slots at the same moment would otherwise all
    // wake the same oldest task, and all but one wake-up would be wasted.
    text: `SELECT * FROM (
             SELECT t.task_id, t.job_id, t.stage, t.task_type, t.attempt FROM coremachine.tasks t
              WHERE t.slot_waiter = $1 AND t.status = 'QUEUED' AND NOT t.remote AND (t.retry_at IS NULL OR t.retry_at <= now())
                AND EXISTS (SELECT 1 FROM coremachine.jobs j WHERE j.job_id = t.job_id AND j.status = 'PROCESSING' AND j.stage = t.stage)
              ORDER BY t.created_at, t.task_index LIMIT 32) oldest
           ORDER BY random() LIMIT $2`,
    values: [limitKey, limit],
  });
  return result.rows;
}

/**
 * Marks tasks a claim deferred for want of a slot of the key as waiting for one, so that a settle
 * freeing a slot wakes them (waitingTasksOfKey). A task already marked is not written again.
 */
export async function markSlotWaiters(db: Queryable, limitKey: string, taskIds: readonly string[]): Promise<void> {
  if (taskIds.length === 0) return;
  await db.query({
    name: 'cm_mark_slot_waiters',
    text: `UPDATE coremachine.tasks SET slot_waiter = $1
            WHERE task_id = ANY($2::text[]) AND status = 'QUEUED' AND NOT remote AND slot_waiter IS DISTINCT FROM $1`,
    values: [limitKey, textArray(taskIds)],
  });
}

/** What one recount of the slot tallies found and corrected, in slots (each expected 0). */
export interface SlotRecount {
  /** Counted for tasks no longer PROCESSING (a way out that did not free its slot): freed. */
  freed: number;
  /** Running tasks that no tally counted (a claim that did not add its slots): counted again. */
  restored: number;
}

/** A recount that corrected nothing (or was not made). */
export const NOTHING_RECOUNTED: SlotRecount = Object.freeze({ freed: 0, restored: 0 });

/**
 * Makes each key's tallies sum to its tasks PROCESSING with a slot claim, both read in this one
 * statement's snapshot, by booking the difference to the key's pid-0 tally. Every other change to
 * the tallies is made in the same statement as its tasks' change, so whatever commits after the
 * snapshot keeps the two in step and the correction stays right. Two recounts overlapping would
 * book one difference twice: the caller holds the recount lock (lockSlotRecount). Finding the
 * running tasks is a scan of the task table (no index on the task's status, so that claims and
 * settles stay HOT updates: migration 015), as the janitor's search for expired leases is: 35 ms
 * for 300,000 tasks. It is skipped while no tally exists (no limited task has run since the last
 * fold), so a deployment without limits does not pay it.
 */
export async function reconcileSlotTallies(db: Queryable): Promise<SlotRecount> {
  const result = await db.query<SlotRecount>({
    name: 'cm_reconcile_slot_tallies',
    text: `WITH running AS (
             SELECT limit_key, count(*) AS n FROM coremachine.tasks
              WHERE status = 'PROCESSING' AND slot_claim IS NOT NULL AND EXISTS (SELECT 1 FROM coremachine.limit_slot_tallies) GROUP BY 1),
           tallied AS (SELECT limit_key, sum(held) AS n FROM coremachine.limit_slot_tallies GROUP BY 1),
           off AS (SELECT limit_key, COALESCE(r.n, 0) - COALESCE(t.n, 0) AS delta FROM running r FULL JOIN tallied t USING (limit_key)),
           booked AS (${addToTallies('SELECT limit_key, 0, delta FROM off WHERE delta <> 0')})
           SELECT COALESCE(sum(-delta) FILTER (WHERE delta < 0), 0)::int AS freed, COALESCE(sum(delta) FILTER (WHERE delta > 0), 0)::int AS restored FROM off`,
  });
  return result.rows[0] ?? NOTHING_RECOUNTED;
}

/** Takes the recount's lock until the transaction ends, if no other janitor holds it: false when one does. */
export async function lockSlotRecount(db: Queryable): Promise<boolean> {
  const result = await db.query<{ locked: boolean }>({
    name: 'cm_lock_slot_recount',
    text: `SELECT pg_try_advisory_xact_lock(hashtextextended('coremachine.slot-recount', 0)) AS locked`,
  });
  return result.rows[0]?.locked === true;
}

/**
 * Folds up to `limit` tallies into their key's pid-0 tally: those of backends that have exited,
 * and those at 0 (deleted; a live session writes a new one when it next claims or settles). The
 * sum of each key's tallies is unchanged, as one statement moves them, so this is safe at any
 * moment; a tally its session is writing now is skipped. Then deletes the pid-0 tallies at 0.
 * Keeps the rows a count of a key reads to one per live session that claims or settles it.
 */
export async function foldSlotTallies(db: Queryable, limit: number): Promise<number> {
  const folded = await db.query<{ n: number }>({
    name: 'cm_fold_slot_tallies',
    text: `WITH gone AS (
             DELETE FROM coremachine.limit_slot_tallies s WHERE (s.limit_key, s.backend_pid) IN (
               SELECT limit_key, backend_pid FROM coremachine.limit_slot_tallies
                WHERE backend_pid <> 0 AND (held = 0 OR backend_pid NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL))
                LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING s.limit_key, s.held),
           moved AS (${addToTallies('SELECT limit_key, 0, sum(held) FROM gone GROUP BY 1 HAVING sum(held) <> 0')})
           SELECT count(*)::int AS n FROM gone`,
    values: [limit],
  });
  await db.query({
    name: 'cm_prune_empty_slot_tallies',
    text: `DELETE FROM coremachine.limit_slot_tallies WHERE backend_pid = 0 AND held = 0`,
  });
  return folded.rows[0]?.n ?? 0;
}

/**
 * Rate buckets untouched for an hour are full again (rates are at least one per 1,000 s), so a
 * missing row means the same: deleting them keeps one row per key in use, not per key ever seen.
 */
export async function pruneIdleRateBuckets(db: Queryable, idleSeconds: number, limit: number): Promise<number> {
  const result = await db.query({
    name: 'cm_prune_idle_rate_buckets',
    text: `DELETE FROM coremachine.task_rate_buckets WHERE limit_key IN (
             SELECT limit_key FROM coremachine.task_rate_buckets WHERE refilled_at < clock_timestamp() - make_interval(secs => $1::float8)
              LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    values: [idleSeconds, limit],
  });
  return result.rowCount ?? 0;
}

export interface LimitedBatchRequest {
  taskId: string;
  attempt: number;
  leaseSeconds: number;
  /** The task type's concurrency limit. */
  limit: number;
  /** The key of a task made before its type had limits (it has none of its own): the scope's default. */
  defaultKey: string;
  /** The key of every task of the type, when it has no key function: the claim may then skip reading the batch first. */
  singleKey: string | null;
}

export interface LimitedBatchClaim {
  claimed: ClaimedTask[];
  /** Fresh candidates past their key's free slots. */
  deferred: Array<{ taskId: string; limitKey: string; limit: number; held: number }>;
  /** Tasks still PROCESSING at the message's attempt with an expired lease: they hold their slot already. */
  reclaim: Array<{ taskId: string; limitKey: string }>;
}

/**
 * Claims a batch of concurrency-limited requests in one round trip (027_limit_slot_claims.sql,
 * 028_claim_before_count.sql, 029_limit_slot_tallies.sql): a batch whose requests all name one single key (`singleKey`) is
 * claimed in one update and then counted under the key's lock, and undone if that is over the
 * limit; otherwise, and for what that update did not take, per slot key in key order: lock it,
 * count its holders and claim the fresh candidates that fit, in task-id order. Give the requests
 * in task-id order (the fast path claims them as given). Requests in none of the three lists were
 * not decided (see the migrations).
 */
export async function claimLimitedBatch(db: Queryable, requests: readonly LimitedBatchRequest[], workerId: string | null): Promise<LimitedBatchClaim> {
  type Row = ClaimedTask & { outcome: 'claimed' | 'deferred' | 'reclaim'; held: number | null; slot_limit: number | null };
  // The parameters in one pass, and each claimed task copied field by field (not with an object
  // rest, which copies generically): this runs for every limited task.
  const ids = new Array<string>(requests.length);
  const attempts = new Array<number>(requests.length);
  const leases = new Array<number>(requests.length);
  const limits = new Array<number>(requests.length);
  const defaultKeys = new Array<string>(requests.length);
  const singleKeys = new Array<string | null>(requests.length);
  requests.forEach((r, i) => {
    ids[i] = r.taskId;
    attempts[i] = r.attempt;
    leases[i] = r.leaseSeconds;
    limits[i] = r.limit;
    defaultKeys[i] = r.defaultKey;
    singleKeys[i] = r.singleKey;
  });
  const result = await db.query<Row>({
    name: 'cm_claim_limited_batch',
    text: `SELECT * FROM coremachine.claim_limited_batch($1::text[], $2::int[], $3::float8[], $4::int[], $5::text[], $6::text[], $7)`,
    values: [textArray(ids), numberArray(attempts), numberArray(leases), numberArray(limits), textArray(defaultKeys), textArray(singleKeys), workerId],
  });
  const batch: LimitedBatchClaim = { claimed: [], deferred: [], reclaim: [] };
  for (const row of result.rows) {
    if (row.outcome === 'claimed')
      batch.claimed.push({
        task_id: row.task_id,
        job_id: row.job_id,
        stage: row.stage,
        task_index: row.task_index,
        task_type: row.task_type,
        parameters: row.parameters,
        parameters_ref: row.parameters_ref,
        attempt: row.attempt,
        claim_id: row.claim_id,
        limit_key: row.limit_key,
      });
    else if (row.outcome === 'deferred')
      batch.deferred.push({ taskId: row.task_id, limitKey: row.limit_key as string, limit: row.slot_limit as number, held: row.held as number });
    else batch.reclaim.push({ taskId: row.task_id, limitKey: row.limit_key as string });
  }
  return batch;
}
