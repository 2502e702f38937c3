-- Task logs: the lines a handler writes with ctx.log(level, message, fields), kept with its task
-- (docs/defining-jobs.md, "Task logs"). They are buffered in memory while the handler runs and
-- written in the transaction that settles the attempt, so a handler that never logs costs no
-- statement, and a failed or retried attempt keeps its lines.
--
-- Bounded twice. An attempt keeps its newest 100 lines (64 KiB): the engine drops older ones before
-- they are written and counts them in task_log_counts.dropped. A job keeps its newest 10,000 lines:
-- a commit that takes it past that deletes its oldest lines and counts them in job_log_counts.dropped.
-- No foreign keys (as tasks since 016): retention and DELETE jobs/{id} delete by job_id, explicitly.
CREATE TABLE coremachine.task_logs (
  task_id    text NOT NULL,
  -- The line's number within its task, across attempts, in the order written: what a reader pages by.
  seq        integer NOT NULL CHECK (seq >= 1),
  job_id     text NOT NULL,
  -- Recording order within the job: the job's cap deletes the lowest first.
  id         bigint GENERATED ALWAYS AS IDENTITY,
  attempt    integer NOT NULL CHECK (attempt >= 0),
  level      text NOT NULL CHECK (level IN ('debug','info','warn','error')),
  message    text NOT NULL,
  fields     jsonb,
  logged_at  timestamptz NOT NULL,
  PRIMARY KEY (task_id, seq)
);
CREATE INDEX task_logs_job_idx ON coremachine.task_logs (job_id, id);

-- Per task: lines recorded so far (the last seq given) and lines its attempts dropped over their cap.
-- Written in the transaction that settles the task, whose row lock it shares: never contended.
CREATE TABLE coremachine.task_log_counts (
  task_id  text PRIMARY KEY,
  job_id   text NOT NULL,
  lines    integer NOT NULL CHECK (lines >= 0),
  dropped  integer NOT NULL CHECK (dropped >= 0)
);
CREATE INDEX task_log_counts_job_idx ON coremachine.task_log_counts (job_id);

-- Per job: lines kept and lines deleted for the job's cap, in shards like stage_counts (014), so the
-- commits of many connections logging for one job do not queue on one row. Only the sum over a
-- job's shards means anything: a shard's `lines` goes below zero when its commit deletes lines
-- another shard counted.
CREATE TABLE coremachine.job_log_counts (
  job_id   text NOT NULL,
  shard    smallint NOT NULL CHECK (shard >= 0),
  lines    integer NOT NULL,
  dropped  integer NOT NULL CHECK (dropped >= 0),
  PRIMARY KEY (job_id, shard)
);
