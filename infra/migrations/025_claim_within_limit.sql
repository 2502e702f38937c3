-- A claim under a concurrency limit in one round trip (core/engine/limits.ts). The key's advisory
-- lock must be taken before the holders are counted, and the count must see every claim committed
-- by the lock's previous holder: two statements, each with its own snapshot. From the engine that
-- was BEGIN, lock, count, claim, COMMIT, five round trips with the lock held across three of them,
-- so the claims of a key queued behind each other's round trips. In a VOLATILE PL/pgSQL function
-- every statement takes a fresh snapshot (READ COMMITTED), so the function locks, counts and claims
-- in one call, and the statement's own transaction ends it: the lock is held for the claim only.
--
-- The claim is the engine's claim statement (cm_claim_tasks in core/state/tasks-store.ts) over the
-- requests that fit under the limit, in task-id order: keep the two alike. Like every limited claim
-- (cm_lock_limit_key), its commit does not wait for the WAL flush.
--
-- Returns the claimed tasks, each with `held` (the key's holders before this claim), or, when
-- nothing was claimed, one row of `held` alone: the caller defers the requests past the free slots.
CREATE FUNCTION coremachine.claim_within_limit(
  p_limit_key text,
  p_limit integer,
  p_task_ids text[],
  p_attempts integer[],
  p_leases float8[],
  p_worker_id text
) RETURNS TABLE (
  held integer,
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
  holders integer;
  claimed integer;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  PERFORM pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || p_limit_key, 0));
  SELECT count(*)::integer INTO holders FROM coremachine.tasks h WHERE h.slot_holder_key = p_limit_key;
  RETURN QUERY
    WITH m AS MATERIALIZED (
      SELECT * FROM unnest(p_task_ids, p_attempts, p_leases) AS m(task_id, attempt, lease)
       ORDER BY task_id
       LIMIT GREATEST(0, p_limit - holders)
    )
    UPDATE coremachine.tasks t SET
      status = 'PROCESSING', attempt = m.attempt, claim_id = gen_random_uuid(),
      lease_losses = t.lease_losses + (t.status = 'PROCESSING')::int,
      lease_expires_at = now() + make_interval(secs => m.lease), started_at = now(), limit_key = p_limit_key, worker_id = p_worker_id
    FROM m
    WHERE t.task_id = m.task_id
      AND t.status = 'QUEUED' AND t.attempt = m.attempt - 1
      AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage
                  AND COALESCE(LEAST(j.deadline_at, j.stage_deadline_at) > now(), true)
             FROM coremachine.jobs j WHERE j.job_id = t.job_id)
    RETURNING holders, t.task_id, t.job_id, t.stage, t.task_index, t.task_type, t.parameters, t.parameters_ref, t.attempt, t.claim_id, t.limit_key;
  GET DIAGNOSTICS claimed = ROW_COUNT;
  IF claimed = 0 THEN
    RETURN QUERY SELECT holders, NULL::text, NULL::text, NULL::integer, NULL::integer, NULL::text, NULL::jsonb, NULL::jsonb, NULL::integer, NULL::uuid, NULL::text;
  END IF;
END
$$;
