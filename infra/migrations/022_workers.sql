-- Who takes work, for the workers view (GET /api/workers, `coremachine workers`, the dashboard):
-- remote workers, seen by their claims and reports over HTTP, and in-process hosts (the local
-- worker of `coremachine dev`, each Functions instance running the tasks trigger), with the task
-- types each takes. Tasks held are not stored here: they are the PROCESSING tasks whose worker_id
-- names the worker, counted when the view is read.
--
-- Written by time, never per task: a remote worker's row at most every few seconds whatever it
-- claims (in-memory coalescing in each instance, then `WHERE last_… < now() - interval` across
-- instances), a host's on its heartbeat timer. Many instances share the database; a hot row per
-- task would cost every task a write.
--
-- (kind, worker_id): a remote worker names itself, so its name cannot take over a host's row.
CREATE TABLE coremachine.workers (
  kind              text NOT NULL CHECK (kind IN ('remote', 'in-process')),
  worker_id         text NOT NULL,
  task_types        text[] NOT NULL,
  -- The machine or Functions instance an in-process host runs on; NULL for a remote worker.
  host              text,
  first_seen_at     timestamptz NOT NULL DEFAULT now(),
  last_claim_at     timestamptz,
  last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, worker_id)
);
