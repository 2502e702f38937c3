/**
 * The statement parts that keep concurrency slots (029_limit_slot_tallies.sql) in step with the
 * statements that move tasks in and out of PROCESSING, so a slot is taken and freed in the same
 * statement, and so the same transaction, as its task's claim and exit.
 */

/**
 * The claim's slots: a data-modifying CTE over `cte`, the statement's own claim, whose RETURNING
 * gives `limit_key` and `slot_claim`. The claim set slot_claim to `claimIdParam` (a parameter of
 * the statement) on each task it took a slot for; they are added to this session's tally of their
 * key. A re-claim of an expired lease keeps the slot claim it has, and adds nothing.
 */
export function takeSlotsOf(cte: string, claimIdParam: string): string {
  return `take_slots AS (${addToTallies(`SELECT ${cte}.limit_key, pg_backend_pid(), count(*) FROM ${cte} WHERE ${cte}.slot_claim = ${claimIdParam} GROUP BY 1`)})`;
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
 * The freed slots: a data-modifying CTE over `cte`, the statement's own update of tasks leaving
 * PROCESSING, whose RETURNING gives `slot_claim` and `limit_key`. Its rows must be tasks that were
 * PROCESSING: a task in another state may still name the slot claim of an earlier claim, whose
 * exit freed it already (a statement that also stops tasks that were not running, as a cancel
 * does, returns NULL as their slot_claim). What they held is taken off this session's tally of
 * their key, whichever session claimed them: only the key's sum counts. A task that holds no slot
 * has no slot claim, and a statement none of whose tasks held one writes nothing.
 */
export function freeSlotsOf(cte: string): string {
  return `free_slots AS (${addToTallies(`SELECT ${cte}.limit_key, pg_backend_pid(), -count(*) FROM ${cte} WHERE ${cte}.slot_claim IS NOT NULL GROUP BY 1`)})`;
}

/**
 * Adds to slot tallies: `select` gives (limit_key, backend_pid, amount) rows, at most one per
 * tally, and each amount is added to its tally, which is created at that amount if missing. Claims,
 * exits, the janitor's recount and its fold all add this way (029's claim function, in SQL, too);
 * only the fold deletes a tally, and it adds the tally's value to pid 0's in the same statement.
 */
export function addToTallies(select: string): string {
  return `INSERT INTO coremachine.limit_slot_tallies AS s (limit_key, backend_pid, held) ${select}
             ON CONFLICT (limit_key, backend_pid) DO UPDATE SET held = s.held + excluded.held`;
}
