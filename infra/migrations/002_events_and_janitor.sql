-- Event trail: every job, stage and task status change, written by statement-level triggers in
-- the same transaction as the change. Triggers cannot be bypassed by a code path that forgets,
-- and transition tables keep it set-based: one INSERT per statement, not one per row.

CREATE TABLE coremachine.events (
  id           bigserial PRIMARY KEY,
  job_id       text NOT NULL,
  entity       text NOT NULL CHECK (entity IN ('job','stage','task')),
  stage        integer,
  task_id      text,
  from_status  text,
  to_status    text NOT NULL,
  attempt      integer,
  error        jsonb,
  at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX events_job_idx ON coremachine.events (job_id, id);

CREATE FUNCTION coremachine.log_job_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO coremachine.events (job_id, entity, stage, from_status, to_status)
    SELECT n.job_id, 'job', n.stage, NULL, n.status FROM new_rows n;
  ELSE
    INSERT INTO coremachine.events (job_id, entity, stage, from_status, to_status, error)
    SELECT n.job_id, 'job', n.stage, o.status, n.status, CASE WHEN n.status = 'FAILED' THEN n.error END
      FROM new_rows n JOIN old_rows o USING (job_id)
     WHERE n.status IS DISTINCT FROM o.status OR n.stage IS DISTINCT FROM o.stage;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION coremachine.log_stage_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO coremachine.events (job_id, entity, stage, from_status, to_status)
    SELECT n.job_id, 'stage', n.stage, NULL, n.status FROM new_rows n;
  ELSE
    INSERT INTO coremachine.events (job_id, entity, stage, from_status, to_status)
    SELECT n.job_id, 'stage', n.stage, o.status, n.status
      FROM new_rows n JOIN old_rows o USING (job_id, stage)
     WHERE n.status IS DISTINCT FROM o.status;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION coremachine.log_task_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO coremachine.events (job_id, entity, stage, task_id, from_status, to_status, attempt)
    SELECT n.job_id, 'task', n.stage, n.task_id, NULL, n.status, n.attempt FROM new_rows n;
  ELSE
    -- A re-claim after lease expiry keeps the status but changes the claim: also an event.
    INSERT INTO coremachine.events (job_id, entity, stage, task_id, from_status, to_status, attempt, error)
    SELECT n.job_id, 'task', n.stage, n.task_id, o.status, n.status, n.attempt,
           CASE WHEN n.status IN ('FAILED','QUEUED') AND n.error IS DISTINCT FROM o.error THEN n.error END
      FROM new_rows n JOIN old_rows o USING (task_id)
     WHERE n.status IS DISTINCT FROM o.status OR (n.status = 'PROCESSING' AND n.claim_id IS DISTINCT FROM o.claim_id);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_events_insert AFTER INSERT ON coremachine.jobs REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION coremachine.log_job_events();
CREATE TRIGGER jobs_events_update AFTER UPDATE ON coremachine.jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION coremachine.log_job_events();
CREATE TRIGGER stages_events_insert AFTER INSERT ON coremachine.stages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION coremachine.log_stage_events();
CREATE TRIGGER stages_events_update AFTER UPDATE ON coremachine.stages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION coremachine.log_stage_events();
CREATE TRIGGER tasks_events_insert AFTER INSERT ON coremachine.tasks REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION coremachine.log_task_events();
CREATE TRIGGER tasks_events_update AFTER UPDATE ON coremachine.tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION coremachine.log_task_events();

-- Tasks whose lease expired are what the janitor looks for; keep that scan cheap.
CREATE INDEX tasks_lease_idx ON coremachine.tasks (lease_expires_at) WHERE status = 'PROCESSING';

-- How many failed tasks a stage tolerates before its job fails (0 = fail fast), fixed at stage start.
ALTER TABLE coremachine.stages ADD COLUMN max_failures integer NOT NULL DEFAULT 0 CHECK (max_failures >= 0);

-- Retries remember when the next attempt is due, so an operator sees a task waiting on backoff.
ALTER TABLE coremachine.tasks ADD COLUMN retry_at timestamptz;

-- Tasks run by remote workers over HTTP are claimed by polling, not sent to the tasks queue.
ALTER TABLE coremachine.tasks ADD COLUMN remote boolean NOT NULL DEFAULT false;
ALTER TABLE coremachine.tasks ADD COLUMN worker_id text;
CREATE INDEX tasks_remote_queued_idx ON coremachine.tasks (task_type, created_at) WHERE remote AND status = 'QUEUED';

-- Each janitor sweep, what it found and what it did.
CREATE TABLE coremachine.janitor_runs (
  id              bigserial PRIMARY KEY,
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz NOT NULL DEFAULT now(),
  requeued_tasks  integer NOT NULL,
  failed_tasks    integer NOT NULL,
  outbox_sent     integer NOT NULL,
  resent_jobs     integer NOT NULL,
  stalled         jsonb NOT NULL
);

-- Messages no consumer could use (malformed, dead-lettered): kept where an operator sees them.
CREATE TABLE coremachine.dead_letters (
  id           bigserial PRIMARY KEY,
  queue        text NOT NULL,
  message_id   text,
  body         jsonb,
  reason       text NOT NULL,
  description  text NOT NULL,
  job_id       text,
  task_id      text,
  at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_job_idx ON coremachine.dead_letters (job_id, id);
