-- Retention finds finished jobs by age, oldest first. Only jobs that can be deleted are indexed,
-- so the index stays as small as the backlog of deletable jobs, and a sweep that finds nothing
-- to delete reads one index page instead of scanning every job.
CREATE INDEX jobs_finished_idx ON coremachine.jobs (finished_at, job_id)
  WHERE status IN ('COMPLETED','COMPLETED_WITH_ERRORS','FAILED','CANCELLED');
