-- Deadlines (issue 13, part 2). Both are wall-clock timestamps on the job row, so the janitor and
-- every claim check one row and one index, never a timer per job.
--   timeout_seconds    the job's effective timeout (definition or per-submission override), kept so
--                      an operator retry can give the job a fresh deadline of the same length;
--   deadline_at        the whole job's deadline, set at submission (created_at + timeout_seconds);
--   stage_deadline_at  the deadline of the job's current stage, set when that stage starts and
--                      cleared when the job moves to another stage.
ALTER TABLE coremachine.jobs
  ADD COLUMN timeout_seconds integer CHECK (timeout_seconds > 0),
  ADD COLUMN deadline_at timestamptz,
  ADD COLUMN stage_deadline_at timestamptz;

-- The janitor's sweep reads overdue jobs in deadline order: LEAST ignores NULLs, so a job with
-- either deadline is indexed by the earlier one; jobs with none are NULL and never scanned.
CREATE INDEX jobs_deadline_idx ON coremachine.jobs ((LEAST(deadline_at, stage_deadline_at)))
  WHERE status IN ('QUEUED', 'PROCESSING', 'PAUSED');
