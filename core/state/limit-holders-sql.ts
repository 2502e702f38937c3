/**
 * The statement part that takes the concurrency slots of tasks entering PROCESSING
 * (027_limit_holders.sql): data-modifying CTEs over `cte`, the statement's own claim, whose
 * RETURNING gives `task_id` and `limit_key`. In the claim's statement, so the task and its slot
 * commit together and a count of the key's holders can never miss a running task; the key's bound
 * is raised by as many in the same statement, so it never falls below its holders. A task without
 * a slot key takes none; a re-claim of an expired lease keeps the slot it has (and raises the bound
 * needlessly, which only makes the next claim count).
 */
export function takeSlotsOf(cte: string): string {
  return `take_slots AS (INSERT INTO coremachine.limit_holders (limit_key, task_id)
             SELECT ${cte}.limit_key, ${cte}.task_id FROM ${cte}
              WHERE ${cte}.limit_key IS NOT NULL AND NOT COALESCE(${holderOf(cte)}, false)),
           raise_bounds AS (UPDATE coremachine.limit_holder_bounds b SET held_at_most = b.held_at_most + t.taken
             FROM (SELECT ${cte}.limit_key, count(*)::int AS taken FROM ${cte} WHERE ${cte}.limit_key IS NOT NULL GROUP BY 1) t
            WHERE b.limit_key = t.limit_key)`;
}

/**
 * The statement part that frees the concurrency slots of tasks leaving PROCESSING
 * (027_limit_holders.sql): a data-modifying CTE over `cte`, the statement's own update, whose
 * RETURNING gives `task_id` and `limit_key`. Written into each statement that moves tasks out of
 * PROCESSING, so a slot is freed in the same transaction as its task, set-based and without a
 * trigger; a task without a slot key matches nothing.
 */
export function freeSlotsOf(cte: string): string {
  return `free_slots AS (DELETE FROM coremachine.limit_holders
             WHERE ctid = ANY (ARRAY(SELECT ${holderOf(cte, 'h.ctid')} FROM ${cte} WHERE ${cte}.limit_key IS NOT NULL)))`;
}

/**
 * The task's own slot row, looked up by its primary key for each task of the statement: a
 * subquery per row, which the planner cannot turn into a join. As a join (an anti-join for the
 * take, a hash join for the free) it was planned as a scan of all of the key's rows, live and
 * deleted since vacuum last ran, once per statement: measured at about 17 µs of PostgreSQL time per
 * task with 200 running. The free deletes the rows it found by their tuple ids.
 */
function holderOf(cte: string, column = 'true'): string {
  return `(SELECT ${column} FROM coremachine.limit_holders h WHERE h.limit_key = ${cte}.limit_key AND h.task_id = ${cte}.task_id)`;
}
