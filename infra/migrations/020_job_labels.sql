-- Who and what (models/job-labels.ts): a job's display name, who created it, and its labels, a
-- JSON object of string to string. The list API filters by each of them, newest first, so each
-- filter has an index that yields its jobs in that order.
--
-- Rows already stored keep their meaning: no name, no creator (NULL), no labels ('{}'). A constant
-- default makes ADD COLUMN metadata only, and the CHECKs are NOT VALID (the rows there satisfy them),
-- so no table is rewritten. The bounds are the ones the engine validates with zod before any SQL;
-- these only keep a writer that skipped it honest.
ALTER TABLE coremachine.jobs
  ADD COLUMN name text,
  ADD COLUMN created_by text,
  ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';

ALTER TABLE coremachine.jobs ADD CONSTRAINT jobs_name_length CHECK (char_length(name) BETWEEN 1 AND 200) NOT VALID;
ALTER TABLE coremachine.jobs ADD CONSTRAINT jobs_created_by_length CHECK (char_length(created_by) BETWEEN 1 AND 200) NOT VALID;
ALTER TABLE coremachine.jobs ADD CONSTRAINT jobs_labels_object CHECK (jsonb_typeof(labels) = 'object') NOT VALID;

-- `jobs.labels` is what a job carries (read with the job, copied into its events); this table is
-- the index that finds jobs by a label, one row per label, written with the job and never changed
-- (a job is not relabelled). A GIN index on `labels` would answer `labels @> ...`, but not in
-- created_at order: with a LIMIT the planner then walks jobs_created_idx and filters, which reads
-- the whole table for a rare label. (key, value, created_at DESC, job_id DESC) reads a page of a
-- label's jobs, newest first, and stops.
--
-- created_at is the job's, kept equal by the foreign key (ON UPDATE CASCADE: coremachine/testing's
-- clock moves jobs back in time); deleting a job (retention, DELETE jobs/{id}) deletes its labels.
ALTER TABLE coremachine.jobs ADD CONSTRAINT jobs_job_id_created_at_key UNIQUE (job_id, created_at);
CREATE TABLE coremachine.job_labels (
  job_id     text NOT NULL,
  created_at timestamptz NOT NULL,
  key        text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 63),
  value      text NOT NULL CHECK (char_length(value) <= 200),
  PRIMARY KEY (job_id, key),
  FOREIGN KEY (job_id, created_at) REFERENCES coremachine.jobs (job_id, created_at) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX job_labels_filter_idx ON coremachine.job_labels (key, value, created_at DESC, job_id DESC);

-- `createdBy=` is an equality: ordered like the list, so a page is an index range.
CREATE INDEX jobs_created_by_idx ON coremachine.jobs (created_by, created_at DESC, job_id DESC) WHERE created_by IS NOT NULL;

-- `name=` is a prefix match (name LIKE 'prefix%'): text_pattern_ops compares by character, so a
-- LIKE prefix is an index range whatever the database's collation.
CREATE INDEX jobs_name_idx ON coremachine.jobs (name text_pattern_ops) WHERE name IS NOT NULL;
