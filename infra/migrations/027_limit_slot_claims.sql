-- Concurrency slots kept apart from the task rows, so that claims and settles of limited tasks are
-- HOT updates again.
--
-- Until now a slot was a PROCESSING task with the slot key, counted through an index on a generated
-- column (015): every claim and every settle of a limited task changed an indexed column, so each was
-- a non-HOT update with new index entries in all of the table's indexes. Measured statement by
-- statement (bench/README.md), that was about 16 µs of PostgreSQL time per task. Two ways were tried
-- and not kept: a row per holder kept by row triggers (the trigger per row made the settle dearer
-- than the index entries it saved), and a row per holder written set-based by the claim and settle
-- statements (each row's insert, lookup and delete cost about 26 µs per task under load, more than
-- the index entries they replaced).
--
-- Here a slot claim is one row per claiming statement and key: how many of the tasks it claimed
-- still hold their slot (`held`) and which they were (`task_ids`). A claimed task names its row
-- (tasks.slot_claim, not indexed). A claim inserts its rows in the claim's statement
-- (takeSlotsOf in core/state/limit-slots-sql.ts); every statement that moves tasks out of
-- PROCESSING lowers the rows of its tasks in the same statement (freeSlotsOf). A key's holders are
-- the sum of its rows' `held`: one row per claim, not per task.
--
-- The invariant is one-sided: a row never counts fewer than its tasks still running. Each task
-- enters PROCESSING once per claim (every claim sets slot_claim: a new row's id, or NULL when it
-- takes no slot) and leaves it once, lowering the row it entered with, so no row is lowered twice
-- for one task. A way out of PROCESSING that did not lower its row (none is known) over-counts
-- until the janitor's next sweep, which recounts the rows from their tasks
-- (reconcileSlotClaims): a slot idles for a while, the limit is never exceeded.
CREATE TABLE coremachine.limit_slot_claims (
  limit_key text NOT NULL,
  claim_id uuid NOT NULL,
  -- 0 once all its tasks have left PROCESSING; such rows count nothing, and a claim of the key
  -- deletes them under the key's lock.
  held integer NOT NULL CHECK (held >= 0),
  task_ids text[] NOT NULL,
  PRIMARY KEY (limit_key, claim_id)
) WITH (fillfactor = 50, toast_tuple_target = 128);
-- Every settle of a claim's tasks updates its row, so the row is kept small and its page roomy,
-- and the updates are HOT: the task ids (read only by the janitor's recount) are stored out of line
-- once a claim has more than a couple, and an update that leaves them alone does not copy them. A
-- row of 1.5 kB kept inline filled its page, its updates could not be HOT, and every update left
-- an index entry behind that each count of the key then visited: at 50,000 tasks a never-binding
-- limit cost twice what it cost at 20,000.
ALTER TABLE coremachine.limit_slot_claims ALTER COLUMN task_ids SET STORAGE EXTERNAL;

ALTER TABLE coremachine.tasks ADD COLUMN slot_claim uuid;

-- The slots held now: one row per key.
WITH running AS (
  SELECT t.task_id, t.slot_holder_key AS limit_key, c.claim_id
    FROM coremachine.tasks t
    -- One id per key: DISTINCT first, then the id (a volatile function under DISTINCT would give every row its own).
    JOIN (SELECT k.key, gen_random_uuid() AS claim_id
            FROM (SELECT DISTINCT slot_holder_key AS key FROM coremachine.tasks WHERE slot_holder_key IS NOT NULL) k) c
      ON c.key = t.slot_holder_key
), marked AS (
  UPDATE coremachine.tasks t SET slot_claim = r.claim_id FROM running r WHERE t.task_id = r.task_id
)
INSERT INTO coremachine.limit_slot_claims (limit_key, claim_id, held, task_ids)
  SELECT limit_key, claim_id, count(*), array_agg(task_id ORDER BY task_id) FROM running GROUP BY 1, 2;

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

-- 026's function, reworked: slots are counted from the key's slot claims, the claim inserts its own
-- slot claim, what it defers is marked as waiting, and a batch of one key that fits under its limit
-- is claimed without reading its tasks first. Its claims clear the waiter mark, which for a task
-- never deferred changes nothing, so the update stays HOT.
--
-- The fast path: when every request names the same slot key (`p_single_keys`, given when the task
-- type has no key function, so its tasks' key is the scope's), the key is locked and counted, and if
-- the whole batch fits, one update claims every fresh candidate of that key. 026 first read the
-- batch's tasks to group them by key and only then claimed them: measured at about 12 µs of
-- PostgreSQL time per task. Requests the fast path did not claim (a task of another key, a
-- re-claim, a duplicate, a task gone) go through the general path, as does a batch that does not
-- fit; it uses a slot claim of its own. The general path then takes other keys' locks while the
-- fast path's key and rows are held: two calls whose fast keys are each other's leftover keys
-- (tasks made under an earlier scope or key function) could wait on each other, a deadlock
-- PostgreSQL detects (40P01), which the engine retries as transient, as with a hash collision.
DROP FUNCTION coremachine.claim_limited_batch(text[], integer[], float8[], integer[], text[], text);

-- The claim of one slot key's requests, shared by claim_limited_batch's two paths: of the first
-- `p_free` requests (in the order given: task-id order, the order every multi-row task lock in the
-- engine takes), those QUEUED one attempt below, of the key (or of none yet, which takes it), under
-- a job running their stage before its deadline. One slot claim row counts what it took.
CREATE FUNCTION coremachine.claim_key_batch(
  p_key text,
  p_free integer,
  p_ids text[],
  p_attempts integer[],
  p_leases float8[],
  p_worker_id text,
  p_slot_claim uuid
) RETURNS TABLE (
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
) LANGUAGE sql VOLATILE AS $$
  WITH m AS MATERIALIZED (
    SELECT * FROM unnest(p_ids, p_attempts, p_leases) WITH ORDINALITY AS m(task_id, attempt, lease, n) WHERE m.n <= p_free
  ), c AS (
    UPDATE coremachine.tasks t SET
      status = 'PROCESSING', attempt = m.attempt, claim_id = gen_random_uuid(),
      lease_expires_at = now() + make_interval(secs => m.lease), started_at = now(), limit_key = p_key, worker_id = p_worker_id,
      slot_waiter = NULL, slot_claim = p_slot_claim
    FROM m
    WHERE t.task_id = m.task_id
      AND t.status = 'QUEUED' AND t.attempt = m.attempt - 1 AND COALESCE(t.limit_key, p_key) = p_key
      AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage
                  AND COALESCE(LEAST(j.deadline_at, j.stage_deadline_at) > now(), true)
             FROM coremachine.jobs j WHERE j.job_id = t.job_id)
    RETURNING t.task_id, t.job_id, t.stage, t.task_index, t.task_type, t.parameters, t.parameters_ref, t.attempt, t.claim_id, t.limit_key
  ), take_slots AS (
    INSERT INTO coremachine.limit_slot_claims (limit_key, claim_id, held, task_ids)
      SELECT p_key, p_slot_claim, count(*), array_agg(c.task_id) FROM c HAVING count(*) > 0
  )
  SELECT * FROM c
$$;

CREATE FUNCTION coremachine.claim_limited_batch(
  p_task_ids text[],
  p_attempts integer[],
  p_leases float8[],
  p_limits integer[],
  p_default_keys text[],
  p_single_keys text[],
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
  slot_claim_id uuid;
  single_key text;
  single_limit integer;
  requested integer := (SELECT count(DISTINCT u) FROM unnest(p_task_ids) u);
  fast_claimed integer := 0;
  v_ids text[] := p_task_ids;
  v_attempts integer[] := p_attempts;
  v_leases float8[] := p_leases;
  v_limits integer[] := p_limits;
  v_default_keys text[] := p_default_keys;
  fresh integer := 0;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  -- The counts below are plain index scans, which mark the entries of deleted slot claims dead as
  -- they pass them. A bitmap scan leaves them, and every later count visits their heap pages again
  -- until vacuum: 1,100 pages for 3,300 claims deleted, 4.4 ms a count, so what a claim cost grew
  -- with the tasks a key had run (as with 026's count of holders). Local to this transaction.
  PERFORM set_config('enable_bitmapscan', 'off', true);

  SELECT min(u.single_key), min(u.slot_limit) INTO single_key, single_limit FROM unnest(p_single_keys, p_limits) AS u(single_key, slot_limit)
   HAVING count(*) = count(u.single_key) AND min(u.single_key) = max(u.single_key);
  IF single_key IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || single_key, 0));
    WITH emptied AS (DELETE FROM coremachine.limit_slot_claims s WHERE s.limit_key = single_key AND s.held = 0)
    SELECT COALESCE(sum(s.held), 0)::integer INTO holders FROM coremachine.limit_slot_claims s WHERE s.limit_key = single_key;
    IF holders + requested <= single_limit THEN
      slot_claim_id := gen_random_uuid();
      -- One request per task (a redelivery may bring two), in task-id order.
      SELECT array_agg(r.task_id ORDER BY r.task_id), array_agg(r.attempt ORDER BY r.task_id), array_agg(r.lease ORDER BY r.task_id)
        INTO v_ids, v_attempts, v_leases
        FROM (SELECT DISTINCT ON (u.task_id) u.* FROM unnest(p_task_ids, p_attempts, p_leases) AS u(task_id, attempt, lease)
               ORDER BY u.task_id, u.attempt DESC) r;
      RETURN QUERY
        SELECT 'claimed'::text, holders, single_limit, c.*
          FROM coremachine.claim_key_batch(single_key, requested, v_ids, v_attempts, v_leases, p_worker_id, slot_claim_id) c;
      GET DIAGNOSTICS fast_claimed = ROW_COUNT;
      IF fast_claimed = requested THEN
        RETURN;
      END IF;
      -- The rest go the general way; what this update claimed is PROCESSING under its slot claim now.
      SELECT array_agg(u.task_id), array_agg(u.attempt), array_agg(u.lease), array_agg(u.slot_limit), array_agg(u.default_key)
        INTO v_ids, v_attempts, v_leases, v_limits, v_default_keys
        FROM unnest(p_task_ids, p_attempts, p_leases, p_limits, p_default_keys) AS u(task_id, attempt, lease, slot_limit, default_key)
       WHERE NOT EXISTS (SELECT 1 FROM coremachine.tasks t WHERE t.task_id = u.task_id AND t.slot_claim = slot_claim_id);
    END IF;
  END IF;

  slot_claim_id := gen_random_uuid();
  FOR k IN
    SELECT COALESCE(t.limit_key, r.default_key) AS key,
           min(r.slot_limit) AS slot_limit,
           array_agg(r.task_id ORDER BY r.task_id) AS ids,
           array_agg(r.attempt ORDER BY r.task_id) AS attempts,
           array_agg(r.lease ORDER BY r.task_id) AS leases
      -- One request per task: the batches of one host may carry two messages of the same task
      -- (a redelivery), and a duplicate must not take a second of the free slots.
      FROM (SELECT DISTINCT ON (u.task_id) u.* FROM unnest(v_ids, v_attempts, v_leases, v_limits, v_default_keys)
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
    -- The key's holders, and its slot claims that hold nothing any more deleted (they count
    -- nothing; under the key's lock no claim of the key is adding to them, and a settle only
    -- lowers a slot claim).
    WITH emptied AS (DELETE FROM coremachine.limit_slot_claims s WHERE s.limit_key = k.key AND s.held = 0)
    SELECT COALESCE(sum(s.held), 0)::integer INTO holders FROM coremachine.limit_slot_claims s WHERE s.limit_key = k.key;
    RETURN QUERY
      SELECT 'claimed'::text, holders, k.slot_limit, c.*
        FROM coremachine.claim_key_batch(k.key, GREATEST(0, k.slot_limit - holders), k.ids, k.attempts, k.leases, p_worker_id, slot_claim_id) c;
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
  -- Every request claimed or a fresh candidate (the common case): none can be a re-claim, so the
  -- batch's tasks are not read a second time.
  IF fast_claimed + fresh = requested THEN
    RETURN;
  END IF;
  RETURN QUERY
    SELECT 'reclaim'::text, NULL::integer, NULL::integer, t.task_id, NULL::text, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::jsonb,
           NULL::integer, NULL::uuid, COALESCE(t.limit_key, r.default_key)
      FROM (SELECT DISTINCT u.task_id, u.attempt, u.default_key FROM unnest(v_ids, v_attempts, v_default_keys) AS u(task_id, attempt, default_key)) r
      JOIN coremachine.tasks t ON t.task_id = r.task_id
     WHERE t.status = 'PROCESSING' AND t.attempt = r.attempt AND t.lease_expires_at < now()
       AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage FROM coremachine.jobs j WHERE j.job_id = t.job_id);
END
$$;
