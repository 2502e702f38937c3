-- Issue 14. A task row is updated twice in its life (claim, settle) and each update was a non-HOT
-- update: PostgreSQL may keep a new row version on the same page without touching any index
-- (a heap-only tuple) only when no column that an index covers, in its key or its predicate,
-- changes. `status` sat in the predicates of four partial indexes and `lease_expires_at` was the
-- key of one, so every claim and every settle added an entry to every index of the table: half the
-- WAL per task and most of the claim's time.
--
-- Now no index of tasks covers a column that the claim or the settle of an ordinary task changes:
-- - The partial indexes of remote and limited tasks key on stored generated columns that are NULL
--   for every other task and stay NULL through its updates (a value that does not change does not
--   prevent a HOT update). For a remote or limited task they change with its status, as before.
-- - There is no index on lease_expires_at. The janitor looks for expired leases among the tasks of
--   the current stage of jobs that can have running tasks (QUEUED, PROCESSING, PAUSED), through
--   the (job_id, stage, task_index) index, as its stall sweep already reads those tasks. A job that
--   stops (FAILED, CANCELLED, timed out) cancels its open tasks in the same transaction
--   (core/engine/stage-advance.ts failJob), so no stopped job keeps a running task to look for.
-- - fillfactor leaves room on each page for the new versions; page pruning reclaims the old ones.
--
-- Adding a stored generated column rewrites the table under an ACCESS EXCLUSIVE lock: run this
-- migration in a quiet window on a large installation.
ALTER TABLE coremachine.tasks
  ADD COLUMN remote_queued_type text GENERATED ALWAYS AS (CASE WHEN remote AND status = 'QUEUED' THEN task_type END) STORED,
  ADD COLUMN slot_holder_key text GENERATED ALWAYS AS (CASE WHEN status = 'PROCESSING' THEN limit_key END) STORED,
  ADD COLUMN slot_waiter_key text GENERATED ALWAYS AS (CASE WHEN status = 'QUEUED' AND NOT remote THEN limit_key END) STORED;

DROP INDEX coremachine.tasks_lease_idx;
DROP INDEX coremachine.tasks_remote_queued_idx;
DROP INDEX coremachine.tasks_limit_holders_idx;
DROP INDEX coremachine.tasks_limit_waiting_idx;

-- Same lookups as before (002_events_and_janitor.sql, 011_task_limits.sql), on the generated keys.
CREATE INDEX tasks_remote_queued_idx ON coremachine.tasks (remote_queued_type, created_at) WHERE remote_queued_type IS NOT NULL;
CREATE INDEX tasks_limit_holders_idx ON coremachine.tasks (slot_holder_key) WHERE slot_holder_key IS NOT NULL;
CREATE INDEX tasks_limit_waiting_idx ON coremachine.tasks (slot_waiter_key, created_at, task_index) WHERE slot_waiter_key IS NOT NULL;

-- A page holds its rows' claimed and settled versions until pruning frees the older ones.
ALTER TABLE coremachine.tasks SET (fillfactor = 40);

-- Before this migration a FAILED job left its running tasks PROCESSING until their leases expired;
-- the janitor no longer looks for those, so they are cancelled here, as a stopping job now does.
UPDATE coremachine.tasks t SET status = 'CANCELLED', finished_at = GREATEST(now(), t.started_at), claim_id = NULL, lease_expires_at = NULL
  FROM coremachine.jobs j
 WHERE j.job_id = t.job_id AND t.status IN ('QUEUED', 'PROCESSING') AND j.status NOT IN ('QUEUED', 'PROCESSING', 'PAUSED');
