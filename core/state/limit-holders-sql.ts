/**
 * The statement part that takes the concurrency slots of tasks entering PROCESSING
 * (027_limit_holders.sql): a data-modifying CTE over `cte`, the statement's own claim, whose
 * RETURNING gives `task_id` and `limit_key`. In the claim's statement, so the task and its slot
 * commit together and a count of the key's holders can never miss a running task. A task without
 * a slot key takes none; a re-claim of an expired lease keeps the slot it has.
 */
export function takeSlotsOf(cte: string): string {
  return `take_slots AS (INSERT INTO coremachine.limit_holders (limit_key, task_id)
             SELECT ${cte}.limit_key, ${cte}.task_id FROM ${cte} WHERE ${cte}.limit_key IS NOT NULL ON CONFLICT DO NOTHING)`;
}

/**
 * The statement part that frees the concurrency slots of tasks leaving PROCESSING
 * (027_limit_holders.sql): a data-modifying CTE over `cte`, the statement's own update, whose
 * RETURNING gives `task_id` and `limit_key`. Written into each statement that moves tasks out of
 * PROCESSING, so a slot is freed in the same transaction as its task, set-based and without a
 * trigger; a task without a slot key matches nothing.
 */
export function freeSlotsOf(cte: string): string {
  return `free_slots AS (DELETE FROM coremachine.limit_holders h USING ${cte} WHERE h.limit_key = ${cte}.limit_key AND h.task_id = ${cte}.task_id)`;
}
