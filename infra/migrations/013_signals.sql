-- Issue 13, approval gates. A stage may wait for a named signal instead of running tasks
-- (`.waitFor` in the job builder). Such a stage row has total 1 and `signal` set; delivering the
-- signal counts it completed (compare-and-set on completed = 0), in the same transaction that
-- stores the payload below. Nothing polls while it waits.
ALTER TABLE coremachine.stages ADD COLUMN signal text;

-- Delivered signals, one per job and name (a job type waits for a name at most once). The
-- payload is the waiting stage's result; the digest (SHA-256 of its canonical JSON) tells a
-- repeated identical delivery (answered 200, changes nothing) from a different one (409).
CREATE TABLE coremachine.signals (
  job_id       text NOT NULL REFERENCES coremachine.jobs (job_id) ON DELETE CASCADE,
  name         text NOT NULL,
  stage        integer NOT NULL CHECK (stage >= 1),
  payload      jsonb NOT NULL,
  digest       text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, name)
);

-- The event trail says when a signal arrived: entity 'signal', WAITING → RECEIVED, its name in
-- detail (the column schedule events use, 007), written by a trigger like every other event, so
-- no code path can deliver one silently. The entity list keeps every earlier entity.
ALTER TABLE coremachine.events DROP CONSTRAINT events_entity_check;
ALTER TABLE coremachine.events ADD CONSTRAINT events_entity_check CHECK (entity IN ('job','stage','task','schedule','signal'));

CREATE FUNCTION coremachine.log_signal_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO coremachine.events (job_id, entity, stage, from_status, to_status, detail)
  SELECT n.job_id, 'signal', n.stage, 'WAITING', 'RECEIVED', jsonb_build_object('signal', n.name) FROM new_rows n;
  RETURN NULL;
END $$;

CREATE TRIGGER signals_events_insert AFTER INSERT ON coremachine.signals REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION coremachine.log_signal_events();
