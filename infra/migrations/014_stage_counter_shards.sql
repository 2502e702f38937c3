-- Issue 10. With the job row no longer locked by result commits, every commit of a stage's results
-- still queued on one row: the stage's counter, locked from its UPDATE until COMMIT (the WAL flush).
-- At 16 and 32 instances that row was 80% of all lock waits. A commit now adds its counts to one of
-- 16 shard rows, picked by its backend, so commits from different connections rarely meet.
--
-- A stage's counts are the stage row's own plus its shards' (core/state/stages-store.ts reads them
-- together). Finishing or reopening a stage folds the shards into the stage row, where the CHECK
-- (completed + failed <= total) holds. Exactly one advance: no commit sees the others' uncommitted
-- shards, so each commit reads the counts again after it has committed (the last one sees all) and
-- the stage check that acts does so under the job row lock (core/engine/stage-check.ts).
CREATE TABLE coremachine.stage_counts (
  job_id     text NOT NULL,
  stage      integer NOT NULL,
  shard      smallint NOT NULL CHECK (shard >= 0),
  completed  integer NOT NULL DEFAULT 0 CHECK (completed >= 0),
  failed     integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
  PRIMARY KEY (job_id, stage, shard),
  FOREIGN KEY (job_id, stage) REFERENCES coremachine.stages (job_id, stage) ON DELETE CASCADE
);

-- For operators and ad-hoc SQL: each stage with its counts added up (the engine reads the same
-- sums in core/state/stages-store.ts).
CREATE VIEW coremachine.stage_progress AS
  SELECT s.job_id, s.stage, s.name, s.status, s.total,
         s.completed + COALESCE(c.completed, 0) AS completed,
         s.failed + COALESCE(c.failed, 0) AS failed
    FROM coremachine.stages s
    LEFT JOIN (SELECT job_id, stage, sum(completed)::int AS completed, sum(failed)::int AS failed
                 FROM coremachine.stage_counts GROUP BY job_id, stage) c USING (job_id, stage);
