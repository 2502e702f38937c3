-- Issue 12. Re-runs: the caller's Idempotency-Key is part of the job id, and kept on the job so an
-- operator can see why two jobs with the same parameters exist. Bounded like the API bounds it.
ALTER TABLE coremachine.jobs ADD COLUMN idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 200);

-- Schedules are declared in code; this is their state. next_fire_at is the cursor: the first tick
-- not yet handled (fired or skipped). Every sweep advances it with a compare-and-set on its old
-- value, so two sweeps never both handle the same tick.
CREATE TABLE coremachine.schedules (
  name          text PRIMARY KEY,
  paused        boolean NOT NULL,
  next_fire_at  timestamptz,
  last_fire_at  timestamptz,
  last_job_id   text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Schedule changes (pause, resume, fired, skipped ticks) join the one audit trail. They belong to
-- no job, so job_id becomes optional and the schedule's name says whose event it is.
ALTER TABLE coremachine.events ALTER COLUMN job_id DROP NOT NULL;
ALTER TABLE coremachine.events ADD COLUMN schedule_name text;
ALTER TABLE coremachine.events ADD COLUMN detail jsonb;
ALTER TABLE coremachine.events DROP CONSTRAINT events_entity_check;
ALTER TABLE coremachine.events ADD CONSTRAINT events_entity_check CHECK (entity IN ('job','stage','task','schedule'));
ALTER TABLE coremachine.events ADD CONSTRAINT events_owner_check CHECK ((entity = 'schedule') = (schedule_name IS NOT NULL) AND (entity = 'schedule' OR job_id IS NOT NULL));
CREATE INDEX events_schedule_idx ON coremachine.events (schedule_name, id) WHERE schedule_name IS NOT NULL;
