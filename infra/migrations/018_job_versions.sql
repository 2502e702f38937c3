-- A job runs the version of its job type it was submitted under until it ends, whatever was
-- deployed since (models/job-definition.ts `version`). Jobs submitted before versions existed ran
-- the only definition there was: version 1.
ALTER TABLE coremachine.jobs ADD COLUMN job_version int NOT NULL DEFAULT 1 CHECK (job_version >= 1);
