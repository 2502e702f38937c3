-- Concurrency slots tallied per key and database session, instead of one row per claim.
--
-- In 027 every claim of a limited task inserted a slot-claim row (heap, primary key, and the task
-- ids stored out of line), every settle updated it, and a later claim of the key deleted it; each
-- count of the key walked the rows of the claims still in flight and the entries of those
-- deleted. Measured (bench/README.md): with no function, lock or count at all, a claim that only
-- inserted such rows cost most of what a never-binding limit costs, so the rows were the cost.
--
-- Now a key's slots held are the sum of its tallies, one row per key and backend (pid): a claim
-- adds what it took to its own session's tally, a statement that moves tasks out of PROCESSING
-- subtracts what they held from its own session's tally (core/state/limit-slots-sql.ts). A session
-- runs one transaction at a time, so no two transactions ever write the same tally and nothing
-- waits on another's row; after a session's first claim or settle of a key, each is a HOT update of
-- one small row, with no index entry, no TOAST and no delete. A tally may be negative (its session
-- settled tasks that others claimed); only the key's sum means anything.
--
-- The invariant is exact and holds in every snapshot: the sum of a key's tallies is the number of
-- its tasks PROCESSING with a slot claim (tasks.slot_claim, set by the claim that took the slot;
-- a re-claim of an expired lease keeps it and adds nothing), because every change to either is made
-- in the same statement as the other. The janitor checks it in one snapshot and books any
-- difference to the key's pid-0 tally, the tally of no live session; it also folds the tallies of
-- backends that have exited into pid 0 and deletes tallies at 0 (reconcileSlotTallies,
-- foldSlotTallies in core/state/limits-store.ts). Folding moves a tally's value to another row in
-- one statement, so it is safe at any moment: a live session whose row was folded inserts a new one.
CREATE TABLE coremachine.limit_slot_tallies (
  limit_key text NOT NULL,
  backend_pid integer NOT NULL,
  held bigint NOT NULL,
  PRIMARY KEY (limit_key, backend_pid)
) WITH (fillfactor = 50);

-- The slots held now, from the tasks themselves: the tally of no live session.
INSERT INTO coremachine.limit_slot_tallies (limit_key, backend_pid, held)
  SELECT limit_key, 0, count(*) FROM coremachine.tasks WHERE status = 'PROCESSING' AND slot_claim IS NOT NULL GROUP BY 1;

-- 028's claim of one key's requests, adding to the session's tally instead of inserting a slot claim.
CREATE OR REPLACE FUNCTION coremachine.claim_key_batch(
  p_key text,
  p_free integer,
  p_ids text[],
  p_attempts integer[],
  p_leases float8[],
  p_worker_id text,
  p_slot_claim uuid
) RETURNS SETOF coremachine.claimed_task LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RETURN QUERY
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
      INSERT INTO coremachine.limit_slot_tallies AS s (limit_key, backend_pid, held)
        SELECT p_key, pg_backend_pid(), count(*) FROM c HAVING count(*) > 0
      ON CONFLICT (limit_key, backend_pid) DO UPDATE SET held = s.held + excluded.held
    )
    SELECT * FROM c;
END
$$;

-- 028's, counting the key's tallies; the emptied slot claims it deleted are gone with their table.
CREATE OR REPLACE FUNCTION coremachine.claim_limited_batch(
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
  requested integer;
  fast_claimed integer := 0;
  v_ids text[] := p_task_ids;
  v_attempts integer[] := p_attempts;
  v_leases float8[] := p_leases;
  v_limits integer[] := p_limits;
  v_default_keys text[] := p_default_keys;
  fresh integer := 0;
  fast_rows coremachine.claimed_task[];
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);

  SELECT CASE WHEN count(*) = count(u.single_key) AND min(u.single_key) = max(u.single_key) THEN min(u.single_key) END,
         min(u.slot_limit), count(DISTINCT u.task_id)
    INTO single_key, single_limit, requested
    FROM unnest(p_single_keys, p_limits, p_task_ids) AS u(single_key, slot_limit, task_id);
  IF single_key IS NOT NULL THEN
    IF requested <= single_limit THEN
      slot_claim_id := gen_random_uuid();
      -- Claimed first, counted after: the key's lock is held from the count to the commit only, not
      -- over the claim's update. Under the lock the count sees every claim of the key committed
      -- before it and this one's own slot claim; over the limit, the claim is undone (the block's
      -- subtransaction) and the batch goes the locked way below.
      BEGIN
        SELECT array_agg(c) INTO fast_rows
          FROM coremachine.claim_key_batch(single_key, cardinality(p_task_ids), p_task_ids, p_attempts, p_leases, p_worker_id, slot_claim_id) c;
        fast_claimed := COALESCE(cardinality(fast_rows), 0);
        PERFORM pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || single_key, 0));
        SELECT COALESCE(sum(s.held), 0)::integer INTO holders FROM coremachine.limit_slot_tallies s WHERE s.limit_key = single_key;
        IF holders > single_limit THEN
          RAISE EXCEPTION 'the claim of % would exceed its limit', single_key USING ERRCODE = 'CMOVR';
        END IF;
      EXCEPTION WHEN SQLSTATE 'CMOVR' THEN
        fast_rows := NULL;
        fast_claimed := 0;
      END;
      IF fast_claimed > 0 THEN
        RETURN QUERY SELECT 'claimed'::text, holders - fast_claimed, single_limit, c.* FROM unnest(fast_rows) c;
      END IF;
      IF fast_claimed = requested THEN
        RETURN;
      END IF;
      -- The rest go the general way; what this update claimed is PROCESSING under this call's slot claim id now.
      SELECT array_agg(u.task_id), array_agg(u.attempt), array_agg(u.lease), array_agg(u.slot_limit), array_agg(u.default_key)
        INTO v_ids, v_attempts, v_leases, v_limits, v_default_keys
        FROM unnest(p_task_ids, p_attempts, p_leases, p_limits, p_default_keys) AS u(task_id, attempt, lease, slot_limit, default_key)
       WHERE fast_claimed = 0 OR NOT EXISTS (SELECT 1 FROM coremachine.tasks t WHERE t.task_id = u.task_id AND t.slot_claim = slot_claim_id);
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
    SELECT COALESCE(sum(s.held), 0)::integer INTO holders FROM coremachine.limit_slot_tallies s WHERE s.limit_key = k.key;
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

DROP TABLE coremachine.limit_slot_claims;
