/**
 * The statement parts that keep concurrency slots (027_limit_slot_claims.sql) in step with the
 * statements that move tasks in and out of PROCESSING, so a slot is taken and freed in the same
 * statement, and so the same transaction, as its task's claim and exit.
 */

/**
 * The claim's slot rows: a data-modifying CTE over `cte`, the statement's own claim, whose
 * RETURNING gives `task_id`, `limit_key` and `slot_claim`. The claim set slot_claim to
 * `claimIdParam` (a parameter of the statement) on each task it took a slot for; one row per key
 * counts them. A re-claim of an expired lease keeps the slot claim it has, and takes no new one.
 */
export function takeSlotsOf(cte: string, claimIdParam: string): string {
  return `take_slots AS (INSERT INTO coremachine.limit_slot_claims (limit_key, claim_id, held, task_ids)
             SELECT ${cte}.limit_key, ${cte}.slot_claim, count(*), array_agg(${cte}.task_id) FROM ${cte}
              WHERE ${cte}.slot_claim = ${claimIdParam} GROUP BY 1, 2)`;
}

/**
 * What the statement's claim sets a task's slot_claim to: `claimIdParam` when it takes a slot (the
 * task has a slot key and was QUEUED), the one it has when it re-claims an expired lease, NULL when
 * it takes none. `keyExpression` is the task's slot key after the claim.
 */
export function slotClaimOf(keyExpression: string, claimIdParam: string): string {
  return `CASE WHEN t.status = 'PROCESSING' THEN t.slot_claim WHEN ${keyExpression} IS NOT NULL THEN ${claimIdParam}::uuid END`;
}

/**
 * The freed slots: data-modifying CTEs over `cte`, the statement's own update of tasks leaving
 * PROCESSING, whose RETURNING gives `slot_claim` and `limit_key`. Its rows must be tasks that were
 * PROCESSING: a task in another state may still name the slot claim of an earlier claim, which
 * its exit then lowered already (a statement that also stops tasks that were not running, as a
 * cancel does, returns NULL as their slot_claim). Each slot claim row is lowered by
 * its tasks in this statement, by key (so if a concurrent statement lowered the row first, this
 * one is re-applied to the row it left, never lost). A task that holds no slot has no slot claim.
 * The update is skipped outright when no task of the statement held one.
 */
export function freeSlotsOf(cte: string): string {
  return `freed AS (SELECT ${cte}.limit_key, ${cte}.slot_claim, count(*)::int AS n FROM ${cte} WHERE ${cte}.slot_claim IS NOT NULL GROUP BY 1, 2),
           free_slots AS (UPDATE coremachine.limit_slot_claims s SET held = s.held - f.n FROM freed f
             WHERE s.limit_key = f.limit_key AND s.claim_id = f.slot_claim AND EXISTS (SELECT 1 FROM freed))`;
}
