-- A limited claim of a whole batch in one round trip (core/engine/limits.ts). 025 claimed one slot
-- key per call, but the engine first had to read the batch's tasks to learn their keys and whether
-- each could be claimed at all: two round trips per batch where an unlimited claim takes one, the
-- larger part of what a concurrency limit that never binds cost. This function reads the batch's
-- tasks, groups the fresh candidates by slot key and, key by key in key order, locks the key, counts
-- its holders and claims the candidates that fit, in task-id order.
--
-- Every statement of a VOLATILE PL/pgSQL function takes a fresh snapshot (READ COMMITTED), so each
-- key's count, taken after its lock, sees every claim committed by the lock's previous holder. The
-- locks are held to the end of the call's transaction; keys are locked in key order, so two calls
-- cannot wait on each other (a hash collision of two keys that reversed the order would be a
-- deadlock PostgreSQL detects, 40P01, which the engine retries as transient).
--
-- The claim is the engine's claim statement (cm_claim_tasks in core/state/tasks-store.ts) over the
-- requests that fit: keep the two alike. Like every limited claim, its commit does not wait for the
-- WAL flush (cm_lock_limit_key).
--
-- One row per request it decided:
--   claimed  — the claimed task (the claim's columns), `held` the key's holders before the claim;
--   deferred — a fresh candidate past the key's free slots (`held`, `slot_limit` say why);
--   reclaim  — a PROCESSING task at the message's attempt whose lease expired: it already holds its
--              slot and is claimed by the caller's unit of work;
-- requests it did not decide (task gone, a duplicate, its job not at its stage, or a candidate
-- within the free slots that another claim took first) get no row: the caller classifies them.
DROP FUNCTION coremachine.claim_within_limit(text, integer, text[], integer[], float8[], text);

CREATE FUNCTION coremachine.claim_limited_batch(
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
  fresh integer := 0;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  -- The holders are counted through tasks_limit_holders_idx, which keeps an entry for every task
  -- that held a slot until vacuum removes it. A bitmap scan visits the heap for each of them on
  -- every count, so the count grew with the tasks a key had run (0.51 ms for 190 holders among
  -- 20,000 finished, 0.025 ms once vacuumed); a plain index scan marks the entries of finished
  -- holders dead as it passes them, and later counts skip them (0.09 ms). Local to this call's
  -- transaction: its other statements look rows up by primary key.
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
    SELECT count(*)::integer INTO holders FROM coremachine.tasks h WHERE h.slot_holder_key = k.key;
    RETURN QUERY
      WITH m AS MATERIALIZED (
        SELECT * FROM unnest(k.ids, k.attempts, k.leases) WITH ORDINALITY AS m(task_id, attempt, lease, n)
         WHERE m.n <= GREATEST(0, k.slot_limit - holders)
      )
      UPDATE coremachine.tasks t SET
        status = 'PROCESSING', attempt = m.attempt, claim_id = gen_random_uuid(),
        lease_losses = t.lease_losses + (t.status = 'PROCESSING')::int,
        lease_expires_at = now() + make_interval(secs => m.lease), started_at = now(), limit_key = k.key, worker_id = p_worker_id
      FROM m
      WHERE t.task_id = m.task_id
        AND t.status = 'QUEUED' AND t.attempt = m.attempt - 1
        AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage
                    AND COALESCE(LEAST(j.deadline_at, j.stage_deadline_at) > now(), true)
               FROM coremachine.jobs j WHERE j.job_id = t.job_id)
      RETURNING 'claimed'::text, holders, k.slot_limit, t.task_id, t.job_id, t.stage, t.task_index, t.task_type, t.parameters, t.parameters_ref,
                t.attempt, t.claim_id, t.limit_key;
    RETURN QUERY
      SELECT 'deferred'::text, holders, k.slot_limit, d.task_id, NULL::text, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::jsonb,
             NULL::integer, NULL::uuid, k.key
        FROM unnest(k.ids) WITH ORDINALITY AS d(task_id, n)
       WHERE d.n > GREATEST(0, k.slot_limit - holders);
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
