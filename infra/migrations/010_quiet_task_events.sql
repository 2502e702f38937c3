-- Issue 14. Two event rows per task (claimed, completed) were a third of the bytes on disk per task
-- and of the WAL it wrote, and they explain nothing the task row does not: a first attempt that
-- succeeds has its started_at, finished_at and attempt on the row. The trail keeps every event that
-- explains a failed, retried, re-claimed or cancelled task: any transition of an attempt after the
-- first, a failure, a retry or lease loss (PROCESSING → QUEUED, with its error), a re-claim after
-- a lease expired, a cancel, and an operator retry (FAILED → QUEUED).
--
-- A row trigger with a WHEN clause replaces the statement trigger: the condition is checked in C
-- for each row, so the common case calls no PL/pgSQL and builds no transition tables at all.
DROP TRIGGER tasks_events_update ON coremachine.tasks;
DROP FUNCTION coremachine.log_task_events();

CREATE FUNCTION coremachine.log_task_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO coremachine.events (job_id, entity, stage, task_id, from_status, to_status, attempt, error)
  VALUES (NEW.job_id, 'task', NEW.stage, NEW.task_id, OLD.status, NEW.status, NEW.attempt,
          CASE WHEN NEW.status IN ('FAILED','QUEUED') AND NEW.error IS DISTINCT FROM OLD.error THEN NEW.error END);
  RETURN NULL;
END $$;

CREATE TRIGGER tasks_event_update AFTER UPDATE ON coremachine.tasks FOR EACH ROW
  WHEN ((OLD.status IS DISTINCT FROM NEW.status OR (NEW.status = 'PROCESSING' AND OLD.claim_id IS DISTINCT FROM NEW.claim_id))
        AND NOT (NEW.attempt = 1 AND ((OLD.status = 'QUEUED' AND NEW.status = 'PROCESSING')
                                   OR (OLD.status = 'PROCESSING' AND NEW.status = 'COMPLETED'))))
  EXECUTE FUNCTION coremachine.log_task_event();
