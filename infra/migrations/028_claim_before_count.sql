-- Two changes to 027's limited claim, measured with pg_stat_statements and CPU per task
-- (`npm run bench:limits`, 20,000 tasks on 4 instances, a limit that never binds).
--
-- 1. coremachine.claim_key_batch is PL/pgSQL instead of SQL. PostgreSQL (before 18) plans the
--    statement of a SQL-language function anew on every call that is not inlined, and a function
--    with a data-modifying WITH never is: 505 calls, 505 plans of about 0.35 ms, 8.9 µs of
--    PostgreSQL time per task. A PL/pgSQL function keeps its statements' plans for the session, as
--    claim_limited_batch's own are kept. It returns rows of one named type, so a caller can keep
--    them in a variable.
--
-- 2. The fast path (a batch of one slot key) claims first and takes the key's lock after, to count.
--    In 027 the lock was held from the count over the claim's update to the commit, and the claims
--    of a key from every instance queued behind it: without the lock and count (unsafe, measured to
--    see what they cost) a never-binding limit cost +5% of wall time against no limit, with them
--    +13%. Now the lock covers the count and the commit: the count, taken after the lock, sees every
--    claim of the key committed before and this claim's own slot claim, so the total it checks is
--    what the key holds if this claim commits; any claim that commits later takes the lock later and
--    counts this one. Over the limit, the claim is undone (a PL/pgSQL exception block's
--    subtransaction) and the batch goes the locked way, which claims what fits. The caller sends a
--    key whose limit binds (it deferred a claim of the key a moment ago) the locked way at once, by
--    giving no single key, so a binding limit does not pay for claims made and undone
--    (ConcurrencyClaims in core/engine/limits.ts).
--
--    The fast path also reads fewer statements: the caller gives its requests in task-id order
--    (the order every multi-row task lock takes) and they are claimed as given. Two requests of one
--    task (a redelivery) stay correct: the update takes the task once, and the request it did not
--    take gets no row (the caller finds it a duplicate). Measured in one session (claims of 40
--    tasks, a limit that never binds, against the unlimited claim): 6.6–7.3 µs of extra time per
--    task with 027's statements, 3.2–4.0 with these.
--
--    The fast path now waits for the key's lock while holding the rows it claimed. No settle,
--    cancel or sweep takes a key's lock, but a locked-way claim of the key holds it while it
--    claims its rows, so the two can wait on each other: directly when both carry a message of the
--    same task (a redelivery in flight on two instances at once), or through a third statement, a
--    cancel of a job holding one's task row and waiting for one of the other's. Each is a deadlock
--    PostgreSQL detects (40P01, after deadlock_timeout): one statement fails, and the engine
--    retries it as transient (claims and cancels alike), as it does for the rare deadlock 027
--    describes. Nothing is lost or held; the cost is the wait.
DROP FUNCTION coremachine.claim_key_batch(text, integer, text[], integer[], float8[], text, uuid);

CREATE TYPE coremachine.claimed_task AS (
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
);

-- What 027's did, unchanged.
CREATE FUNCTION coremachine.claim_key_batch(
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
      INSERT INTO coremachine.limit_slot_claims (limit_key, claim_id, held, task_ids)
        SELECT p_key, p_slot_claim, count(*), array_agg(c.task_id) FROM c HAVING count(*) > 0
    )
    SELECT * FROM c;
END
$$;

-- 027's, with the fast path claiming first; the general path is unchanged.
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
      -- Claimed first, counted after: the key's lock is held from the count to the commit only, not
      -- over the claim's update. Under the lock the count sees every claim of the key committed
      -- before it and this one's own slot claim; over the limit, the claim is undone (the block's
      -- subtransaction) and the batch goes the locked way below.
      BEGIN
        SELECT array_agg(c) INTO fast_rows
          FROM coremachine.claim_key_batch(single_key, cardinality(p_task_ids), p_task_ids, p_attempts, p_leases, p_worker_id, slot_claim_id) c;
        fast_claimed := COALESCE(cardinality(fast_rows), 0);
        PERFORM pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || single_key, 0));
        WITH emptied AS (DELETE FROM coremachine.limit_slot_claims s WHERE s.limit_key = single_key AND s.held = 0)
        SELECT COALESCE(sum(s.held), 0)::integer INTO holders FROM coremachine.limit_slot_claims s WHERE s.limit_key = single_key;
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
