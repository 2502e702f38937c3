-- Concurrency slots held in their own table, written set-based by the statements that move tasks
-- in and out of PROCESSING, so that claims and settles of limited tasks are HOT updates again.
--
-- Until now a slot was a PROCESSING task with the slot key, counted through an index on a generated
-- column (015): every claim and every settle of a limited task changed an indexed column, so each was
-- a non-HOT update with new index entries in all of the table's indexes. Measured statement by
-- statement (bench/README.md), that cost about 16 µs of PostgreSQL time per task, the larger part of
-- the 12–16% that a limit that never binds cost in throughput. Migration 027's first draft kept this
-- table by row triggers: the updates became HOT, but a trigger per row made the settle dearer than
-- the index entries it saved. Here the claim statements insert a batch's holders in one statement
-- and the settle statement deletes them in one statement.
--
-- The invariant is one-sided: every task that holds a slot has its row (a claim inserts it in the
-- same statement as it claims the task, under the key's lock), so the count never admits one too
-- many. A row whose task left PROCESSING by a way that does not delete it (none is known; a new one
-- would be) only over-counts until the janitor's next sweep removes it under the key's lock
-- (deleteStaleLimitHolders): a slot idles for a while, the limit is never exceeded.
CREATE TABLE coremachine.limit_holders (
  limit_key text NOT NULL,
  task_id text NOT NULL,
  PRIMARY KEY (limit_key, task_id)
);

-- Counting a key's holders visits every one of them (a heap fetch each, and more for the rows of
-- holders deleted since vacuum last ran): with 200 running, measured at about 15 µs of PostgreSQL
-- time per task claimed, the largest part of what a limit that never binds still cost. So a claim
-- counts only when it must. A key's row here holds a number that is never below its holders: every
-- statement that takes slots raises it by as many in the same statement (takeSlotsOf in
-- core/state/limit-holders-sql.ts), and a settle leaves it alone. A claim whose batch fits under the
-- limit on top of that number claims without counting; one that does not fit (the limit binds, or
-- nearly) counts exactly and sets the number to the exact count. A key without a row is counted.
CREATE TABLE coremachine.limit_holder_bounds (
  limit_key text PRIMARY KEY,
  held_at_most integer NOT NULL CHECK (held_at_most >= 0)
);

INSERT INTO coremachine.limit_holders (limit_key, task_id)
  SELECT slot_holder_key, task_id FROM coremachine.tasks WHERE slot_holder_key IS NOT NULL;

-- A waiter is now a task a claim deferred for want of a slot (set by that claim, cleared by the
-- claim that takes the task and by a cancel), not every QUEUED task of a limited type: creating a
-- limited task writes no index entry, and a claim of a task never deferred leaves the index alone.
-- The wake-up reads only QUEUED tasks (waitingTasksOfKey), so a stale key cannot wake a task twice.
DROP INDEX coremachine.tasks_limit_holders_idx;
DROP INDEX coremachine.tasks_limit_waiting_idx;
ALTER TABLE coremachine.tasks ADD COLUMN slot_waiter text;
UPDATE coremachine.tasks SET slot_waiter = slot_waiter_key WHERE slot_waiter_key IS NOT NULL;
-- Dropping a column rewrites nothing (the values stay in the rows until they are next written).
ALTER TABLE coremachine.tasks DROP COLUMN slot_holder_key, DROP COLUMN slot_waiter_key;
CREATE INDEX tasks_limit_waiting_idx ON coremachine.tasks (slot_waiter, created_at, task_index) WHERE slot_waiter IS NOT NULL;

-- 026's function, counting the holders from the table only when the bound does not admit the batch,
-- inserting the holders of what it claims (raising the bound by as many) and marking what it defers
-- as waiting. Its claim clears the waiter mark, which for a task never
-- deferred changes nothing, so the update stays HOT.
CREATE OR REPLACE FUNCTION coremachine.claim_limited_batch(
  p_task_ids text[],
  p_attempts integer[],
  p_leases float8[],
  p_limits integer[],
  p_default_keys text[],
  p_worker_id text
) RETURNS TABLE (
  outcome text,
  held integer,
  slot_limit integer,
  task_id text,
  job_id text,
  stage integer,
  task_index integer,
  task_type text,
  parameters jsonb,
  parameters_ref jsonb,
  attempt integer,
  claim_id uuid,
  limit_key text
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  k record;
  holders integer;
  counted boolean;
  fresh integer := 0;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  -- The count is a plain index scan, which marks the entries of deleted holders dead as it passes
  -- them (026 says why a bitmap scan is not).
  PERFORM set_config('enable_bitmapscan', 'off', true);
  FOR k IN
    SELECT COALESCE(t.limit_key, r.default_key) AS key,
           min(r.slot_limit) AS slot_limit,
           array_agg(r.task_id ORDER BY r.task_id) AS ids,
           array_agg(r.attempt ORDER BY r.task_id) AS attempts,
           array_agg(r.lease ORDER BY r.task_id) AS leases
      -- One request per task: the batches of one host may carry two messages of the same task
      -- (a redelivery), and a duplicate must not take a second of the free slots.
      FROM (SELECT DISTINCT ON (u.task_id) u.* FROM unnest(p_task_ids, p_attempts, p_leases, p_limits, p_default_keys)
                                                    AS u(task_id, attempt, lease, slot_limit, default_key)
             ORDER BY u.task_id, u.attempt DESC) r
      JOIN coremachine.tasks t ON t.task_id = r.task_id
     WHERE t.status = 'QUEUED' AND t.attempt = r.attempt - 1
       AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage FROM coremachine.jobs j WHERE j.job_id = t.job_id)
     GROUP BY 1
     ORDER BY 1
  LOOP
    fresh := fresh + cardinality(k.ids);
    PERFORM pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || k.key, 0));
    SELECT b.held_at_most INTO holders FROM coremachine.limit_holder_bounds b WHERE b.limit_key = k.key;
    -- Counted when the bound does not admit the whole batch (or the key has none yet): `holders` is
    -- then exact, otherwise an upper bound, which admits the batch all the same.
    counted := holders IS NULL OR holders + cardinality(k.ids) > k.slot_limit;
    IF counted THEN
      INSERT INTO coremachine.limit_holder_bounds AS b (limit_key, held_at_most) VALUES (k.key, 0) ON CONFLICT (limit_key) DO NOTHING;
      SELECT count(*)::integer INTO holders FROM coremachine.limit_holders h WHERE h.limit_key = k.key;
    END IF;
    RETURN QUERY
      WITH m AS MATERIALIZED (
        SELECT * FROM unnest(k.ids, k.attempts, k.leases) WITH ORDINALITY AS m(task_id, attempt, lease, n)
         WHERE m.n <= GREATEST(0, k.slot_limit - holders)
      ), c AS (
        UPDATE coremachine.tasks t SET
          status = 'PROCESSING', attempt = m.attempt, claim_id = gen_random_uuid(),
          lease_losses = t.lease_losses + (t.status = 'PROCESSING')::int,
          lease_expires_at = now() + make_interval(secs => m.lease), started_at = now(), limit_key = k.key, worker_id = p_worker_id,
          slot_waiter = NULL
        FROM m
        WHERE t.task_id = m.task_id
          AND t.status = 'QUEUED' AND t.attempt = m.attempt - 1
          AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage
                      AND COALESCE(LEAST(j.deadline_at, j.stage_deadline_at) > now(), true)
                 FROM coremachine.jobs j WHERE j.job_id = t.job_id)
        RETURNING t.task_id, t.job_id, t.stage, t.task_index, t.task_type, t.parameters, t.parameters_ref, t.attempt, t.claim_id, t.limit_key
      ), take_slots AS (
        -- A stale row of the task (a slot left behind) is taken over as it is.
        -- Looked up task by task, not as an anti-join (see holderOf in core/state/limit-holders-sql.ts).
        INSERT INTO coremachine.limit_holders (limit_key, task_id)
          SELECT c.limit_key, c.task_id FROM c
           WHERE NOT COALESCE((SELECT true FROM coremachine.limit_holders h WHERE h.limit_key = c.limit_key AND h.task_id = c.task_id), false)
      ), raise_bound AS (
        UPDATE coremachine.limit_holder_bounds b SET held_at_most = b.held_at_most + (SELECT count(*)::integer FROM c)
         WHERE b.limit_key = k.key AND EXISTS (SELECT 1 FROM c)
      )
      SELECT 'claimed'::text, holders, k.slot_limit, c.* FROM c;
    IF counted THEN
      -- The bound becomes the exact count, ours included. Its row is locked first, and then counted in
      -- a statement of its own (so with a snapshot taken after the lock): a claim that takes slots
      -- without this key's lock (an unlimited claim of a task made with a slot key) raises the bound
      -- under the same row lock, so its slots are either in this count or added after it.
      PERFORM 1 FROM coremachine.limit_holder_bounds b WHERE b.limit_key = k.key FOR UPDATE;
      UPDATE coremachine.limit_holder_bounds b
         SET held_at_most = (SELECT count(*)::integer FROM coremachine.limit_holders h WHERE h.limit_key = k.key)
       WHERE b.limit_key = k.key;
    END IF;
    -- Deferred: marked as waiting for a slot of the key, so a settle that frees one wakes them.
    RETURN QUERY
      WITH d AS (
        SELECT d.task_id FROM unnest(k.ids) WITH ORDINALITY AS d(task_id, n) WHERE d.n > GREATEST(0, k.slot_limit - holders)
      ), w AS (
        UPDATE coremachine.tasks t SET slot_waiter = k.key FROM d
         WHERE t.task_id = d.task_id AND t.status = 'QUEUED' AND NOT t.remote AND t.slot_waiter IS DISTINCT FROM k.key
      )
      SELECT 'deferred'::text, holders, k.slot_limit, d.task_id, NULL::text, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::jsonb,
             NULL::integer, NULL::uuid, k.key
        FROM d;
  END LOOP;
  -- Every request a fresh candidate (the common case): none can be a re-claim, so the batch's
  -- tasks are not read a second time.
  IF fresh = (SELECT count(DISTINCT u) FROM unnest(p_task_ids) u) THEN
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'reclaim'::text, NULL::integer, NULL::integer, t.task_id, NULL::text, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::jsonb,
           NULL::integer, NULL::uuid, COALESCE(t.limit_key, r.default_key)
      FROM (SELECT DISTINCT u.task_id, u.attempt, u.default_key FROM unnest(p_task_ids, p_attempts, p_default_keys) AS u(task_id, attempt, default_key)) r
      JOIN coremachine.tasks t ON t.task_id = r.task_id
     WHERE t.status = 'PROCESSING' AND t.attempt = r.attempt AND t.lease_expires_at < now()
       AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage FROM coremachine.jobs j WHERE j.job_id = t.job_id);
END
$$;
