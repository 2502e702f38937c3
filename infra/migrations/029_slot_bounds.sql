-- A per-key upper bound of the slots held, so a claim far from its key's limit does not count the
-- key's slot claims.
--
-- In 028 every claim of a limited key counted the key's slot claims under the key's lock: an index
-- scan over each claim's row, following its HOT chain, about 5 µs of PostgreSQL time per task of
-- what a never-binding limit costs (measured by leaving the count out, bench/README.md). Now a key
-- has one row, `bound`, never below the sum of its slot claims' `held` in any committed state:
--
-- - A claim of the key adds what it claims to the bound, under the key's lock and in its own
--   transaction, so the bound and the slot claims it inserts commit together. While the bound plus
--   the claim stays within the limit, that one-row update is all the claim reads: the key cannot
--   hold more than its bound.
-- - Otherwise (or with no row) the claim counts the key's slot claims under the lock, as 028 did,
--   and sets the bound to that count. The count sees every claim of the key committed before the
--   lock was granted; a claim not yet committed takes the lock after and adds to the bound after.
-- - Nothing lowers the bound but that recount: a settle lowers only its own slot claim's `held`, as
--   before (a hot per-key row updated by every settle is what 027 did away with). A bound above
--   the slots held only brings the next recount sooner; it never admits a claim.
-- - A claim made under the lock from Node (core/engine/limits.ts: rate-limited types, remote
--   workers) counts exactly and does not keep the bound: coremachine.lock_limit_key deletes the
--   key's row when it takes the lock, and the next claim recounts.
-- - Deleting a row is always safe (no row means "recount"), so the janitor deletes the rows of keys
--   that hold nothing (pruneIdleSlotBounds).
--
-- What keeps the bound true is that every statement that inserts a slot claim of a limited key
-- holds the key's lock. The one that does not is a claim of a task with a slot key by a process
-- whose registration has no limit for its type (a deployment changing the type's limits): that
-- process does not count the limit anyway, and its tasks, once ended, leave the bound above the
-- slots again.
--
-- The claims of a key now also leave its emptied slot claims until the next recount (which deletes
-- them under the lock, as 028's every claim did) or the janitor's prune: a recount comes at the
-- latest after the key's limit's worth of claimed tasks, so they stay few.
CREATE TABLE coremachine.limit_slot_bounds (
  limit_key text PRIMARY KEY,
  bound integer NOT NULL CHECK (bound >= 0)
) WITH (fillfactor = 50);
-- Updated by every claim of its key: a roomy page keeps those updates HOT.

-- Under the key's lock: the slots the key's claims hold now, its emptied slot claims deleted on the
-- way (plain index scans, as 028 set: they mark the deleted entries dead as they pass them).
CREATE FUNCTION coremachine.count_slots_held(p_key text) RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  holders integer;
BEGIN
  WITH emptied AS (DELETE FROM coremachine.limit_slot_claims s WHERE s.limit_key = p_key AND s.held = 0)
  SELECT COALESCE(sum(s.held), 0)::integer INTO holders FROM coremachine.limit_slot_claims s WHERE s.limit_key = p_key;
  RETURN holders;
END
$$;

-- The lock a claim made from Node takes on its key (lockLimitKey in core/state/limits-store.ts):
-- as before, with its commit not waiting for the WAL flush and bitmap scans off, and now also the
-- key's bound deleted, because the claims made under it do not keep the bound.
CREATE FUNCTION coremachine.lock_limit_key(p_key text) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_bitmapscan', 'off', true);
  PERFORM pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || p_key, 0));
  DELETE FROM coremachine.limit_slot_bounds WHERE limit_key = p_key;
END
$$;

-- 028's, with each key's bound read and kept under its lock before counting.
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
  wanted integer;
  recounted boolean;
  got integer;
BEGIN
  -- The counts below are plain index scans, which mark the entries of deleted slot claims dead as
  -- they pass them. A bitmap scan leaves them, and every later count visits their heap pages again
  -- until vacuum: 1,100 pages for 3,300 claims deleted, 4.4 ms a count, so what a claim cost grew
  -- with the tasks a key had run (as with 026's count of holders). Both local to this transaction.
  PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_bitmapscan', 'off', true);

  SELECT CASE WHEN count(*) = count(u.single_key) AND min(u.single_key) = max(u.single_key) THEN min(u.single_key) END,
         min(u.slot_limit), count(DISTINCT u.task_id)
    INTO single_key, single_limit, requested
    FROM unnest(p_single_keys, p_limits, p_task_ids) AS u(single_key, slot_limit, task_id);
  IF single_key IS NOT NULL THEN
    IF requested <= single_limit THEN
      slot_claim_id := gen_random_uuid();
      -- Claimed first, checked after: the key's lock is held from the check to the commit only, not
      -- over the claim's update. Under the lock the bound takes this claim; past the limit (or with
      -- no bound) the key is counted, which sees every claim of the key committed before and this
      -- one's own slot claim. Over the limit, the claim is undone (the block's subtransaction, the
      -- bound's update with it) and the batch goes the locked way below.
      BEGIN
        SELECT array_agg(c) INTO fast_rows
          FROM coremachine.claim_key_batch(single_key, cardinality(p_task_ids), p_task_ids, p_attempts, p_leases, p_worker_id, slot_claim_id) c;
        fast_claimed := COALESCE(cardinality(fast_rows), 0);
        IF fast_claimed > 0 THEN
          PERFORM pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || single_key, 0));
          UPDATE coremachine.limit_slot_bounds b SET bound = b.bound + fast_claimed
           WHERE b.limit_key = single_key AND b.bound + fast_claimed <= single_limit
          RETURNING b.bound INTO holders;
          IF NOT FOUND THEN
            holders := coremachine.count_slots_held(single_key);
            IF holders > single_limit THEN
              RAISE EXCEPTION 'the claim of % would exceed its limit', single_key USING ERRCODE = 'CMOVR';
            END IF;
            INSERT INTO coremachine.limit_slot_bounds AS b (limit_key, bound) VALUES (single_key, holders)
              ON CONFLICT (limit_key) DO UPDATE SET bound = EXCLUDED.bound;
          END IF;
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
      -- The rest go the general way; what this update claimed is PROCESSING under its slot claim now.
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
    -- All of the key's candidates fit under its bound: the bound takes them (the ones another claim
    -- takes first leave it higher than it need be, never lower). Otherwise the key's holders are
    -- counted, and the bound is set to them and what this claim takes.
    wanted := cardinality(k.ids);
    UPDATE coremachine.limit_slot_bounds b SET bound = b.bound + wanted
     WHERE b.limit_key = k.key AND b.bound + wanted <= k.slot_limit
    RETURNING b.bound - wanted INTO holders;
    recounted := NOT FOUND;
    IF recounted THEN
      holders := coremachine.count_slots_held(k.key);
    END IF;
    RETURN QUERY
      SELECT 'claimed'::text, holders, k.slot_limit, c.*
        FROM coremachine.claim_key_batch(k.key, GREATEST(0, k.slot_limit - holders), k.ids, k.attempts, k.leases, p_worker_id, slot_claim_id) c;
    IF recounted THEN
      GET DIAGNOSTICS got = ROW_COUNT;
      INSERT INTO coremachine.limit_slot_bounds AS b (limit_key, bound) VALUES (k.key, holders + got)
        ON CONFLICT (limit_key) DO UPDATE SET bound = EXCLUDED.bound;
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
