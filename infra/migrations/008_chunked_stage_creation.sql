-- Issue 14. A stage's tasks are created in chunks, each committed (and dispatched) on its own, so
-- the first tasks run long before the last are inserted. While `creating`, `created` counts the
-- task rows committed so far and `total` is created + 1: no count of finished tasks can reach it,
-- so the stage cannot complete before its last chunk sets the real total. `fan_out_digest` is the
-- SHA-256 of the task specs created so far: a resumed fan-out must reproduce them exactly.
ALTER TABLE coremachine.stages
  ADD COLUMN creating boolean NOT NULL DEFAULT false,
  ADD COLUMN created integer NOT NULL DEFAULT 0 CHECK (created >= 0),
  ADD COLUMN fan_out_digest text;
