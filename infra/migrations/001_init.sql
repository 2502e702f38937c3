-- Jobs, their stages (the fan-in counters) and tasks. All state lives here; queues only point at it.

CREATE TABLE coremachine.jobs (
  job_id        text PRIMARY KEY,
  job_type      text NOT NULL,
  status        text NOT NULL CHECK (status IN ('QUEUED','PROCESSING','COMPLETED','COMPLETED_WITH_ERRORS','FAILED','CANCELLED','PAUSED')),
  stage         integer NOT NULL DEFAULT 1 CHECK (stage >= 1),
  total_stages  integer NOT NULL CHECK (total_stages >= 1),
  parameters    jsonb NOT NULL,
  result        jsonb,
  error         jsonb,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  started_at    timestamptz,
  finished_at   timestamptz,
  CHECK (stage <= total_stages)
);
CREATE INDEX jobs_created_idx ON coremachine.jobs (created_at DESC, job_id DESC);
CREATE INDEX jobs_status_created_idx ON coremachine.jobs (status, created_at DESC, job_id DESC);
CREATE INDEX jobs_type_created_idx ON coremachine.jobs (job_type, created_at DESC, job_id DESC);

-- One row per started stage. completed/failed move in the same transaction as the task rows they
-- count; the CHECK makes double counting impossible rather than merely unlikely.
CREATE TABLE coremachine.stages (
  job_id       text NOT NULL REFERENCES coremachine.jobs (job_id) ON DELETE CASCADE,
  stage        integer NOT NULL CHECK (stage >= 1),
  name         text NOT NULL,
  status       text NOT NULL CHECK (status IN ('PENDING','PROCESSING','COMPLETED','FAILED','CANCELLED')),
  total        integer NOT NULL CHECK (total >= 0),
  completed    integer NOT NULL DEFAULT 0 CHECK (completed >= 0),
  failed       integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  PRIMARY KEY (job_id, stage),
  CHECK (completed + failed <= total)
);

CREATE TABLE coremachine.tasks (
  task_id           text PRIMARY KEY,
  job_id            text NOT NULL,
  stage             integer NOT NULL,
  task_index        integer NOT NULL CHECK (task_index >= 0),
  task_type         text NOT NULL,
  status            text NOT NULL CHECK (status IN ('QUEUED','PROCESSING','COMPLETED','FAILED','CANCELLED')),
  parameters        jsonb NOT NULL,
  result            jsonb,
  error             jsonb,
  -- attempt counts claims; claim_id fences a completion to the claim that is current.
  attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  claim_id          uuid,
  lease_expires_at  timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  FOREIGN KEY (job_id, stage) REFERENCES coremachine.stages (job_id, stage) ON DELETE CASCADE,
  UNIQUE (job_id, stage, task_index)
);
CREATE INDEX tasks_status_idx ON coremachine.tasks (job_id, stage, status);

-- Transactional outbox: message intents written in the same transaction as the state change that
-- needs them, deleted once sent. A crash between commit and send leaves the row for the sweep.
-- One 'stage_tasks' row stands for every QUEUED task of a stage, so a 10,000-task fan-out costs one row.
CREATE TABLE coremachine.outbox (
  id          bigserial PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('job','stage_tasks','task')),
  job_id      text NOT NULL,
  payload     jsonb NOT NULL,
  not_before  timestamptz NOT NULL DEFAULT now(),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_not_before_idx ON coremachine.outbox (not_before, id);
