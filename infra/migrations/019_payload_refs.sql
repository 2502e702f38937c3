-- Large values in a payload store (Azure Blob Storage, Azurite, a folder for `coremachine dev`):
-- a task's result or parameters (its fan-out spec), or a job's finalize result, whose JSON is over
-- COREMACHINE_PAYLOAD_INLINE_MAX_BYTES is written to the store and only a reference is kept here:
-- {"key": blob name, "size": bytes, "sha256": hex of the bytes}, both checked on every read.
--
-- A reference lives only in these columns, which only the engine writes; a value (the result,
-- parameters columns) is never read as a reference, whatever it looks like, so a reference forged
-- in a result, a spec or a message is just a value. Rows already stored keep their inline values
-- and their meaning: every new column starts NULL.
--
-- All metadata changes: no table is rewritten, and the constraints are NOT VALID (the rows already
-- there satisfy them, having no reference), so a large installation is not scanned under lock.
ALTER TABLE coremachine.tasks
  ADD COLUMN parameters_ref jsonb,
  ADD COLUMN result_ref jsonb,
  ALTER COLUMN parameters DROP NOT NULL;
ALTER TABLE coremachine.jobs ADD COLUMN result_ref jsonb;

-- A value is inline or stored, never both; a task's parameters are always one of the two.
ALTER TABLE coremachine.tasks ADD CONSTRAINT tasks_parameters_in_one_place CHECK ((parameters IS NULL) <> (parameters_ref IS NULL)) NOT VALID;
ALTER TABLE coremachine.tasks ADD CONSTRAINT tasks_result_in_one_place CHECK (result IS NULL OR result_ref IS NULL) NOT VALID;
ALTER TABLE coremachine.jobs ADD CONSTRAINT jobs_result_in_one_place CHECK (result IS NULL OR result_ref IS NULL) NOT VALID;

-- Where the janitor's orphan sweep of the store left off (a listing continuation; NULL: from the
-- start). Each sweep lists one bounded page and deletes the blobs no row references that are older
-- than the grace period: what a crash between a blob's write and its row's commit left behind.
CREATE TABLE coremachine.payload_sweep (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  continuation text,
  swept_at   timestamptz
);
INSERT INTO coremachine.payload_sweep DEFAULT VALUES;
