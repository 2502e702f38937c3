-- Priorities and fair share at claim (core/engine/fair-share.ts). A job may carry a priority class
-- and a fairness key (a tenant, a customer) with a weight; its tasks copy them when they are
-- created. A task message of such a job does not have to run the task it names: its claim takes a
-- ready task of the same type from the highest priority class that has one, and within that class
-- from the key with the fewest running tasks per unit of weight. Every message still claims one
-- task, so the messages outnumber the unclaimed tasks at every moment and none is left behind; the
-- message of a task claimed early claims another one in its turn.
--
-- Jobs without a priority or key are not in this scheme and cost nothing more: their tasks keep
-- NULL in every column below, so their claims and settles stay heap-only updates (015). For a task
-- in the scheme the two generated keys change with its status, as the limited tasks' do (015).
--
-- Adding stored generated columns rewrites the tasks table under an ACCESS EXCLUSIVE lock: run this
-- migration in a quiet window on a large installation. Rows already stored are not in the scheme.
ALTER TABLE coremachine.jobs
  ADD COLUMN fair_rank smallint CHECK (fair_rank BETWEEN 0 AND 2),
  ADD COLUMN fair_key text CHECK (char_length(fair_key) <= 200),
  ADD COLUMN fair_weight smallint CHECK (fair_weight BETWEEN 1 AND 100);

ALTER TABLE coremachine.tasks
  ADD COLUMN fair_rank smallint,
  ADD COLUMN fair_key text,
  ADD COLUMN fair_weight smallint,
  -- Ready to be claimed by any message of its type: QUEUED, queue-executed, without a slot limit.
  ADD COLUMN fair_ready_type text GENERATED ALWAYS AS (
    CASE WHEN fair_key IS NOT NULL AND status = 'QUEUED' AND NOT remote AND limit_key IS NULL THEN task_type END) STORED,
  -- Running now, counted per key to share the next claims out.
  ADD COLUMN fair_running_key text GENERATED ALWAYS AS (CASE WHEN fair_key IS NOT NULL AND status = 'PROCESSING' THEN fair_key END) STORED;

-- The claim walks the distinct (class, key) pairs of a type (a skip scan), then takes the oldest
-- ready tasks of each pair it shares slots to.
CREATE INDEX tasks_fair_ready_idx ON coremachine.tasks (fair_ready_type, fair_rank, fair_key, created_at, task_id) WHERE fair_ready_type IS NOT NULL;
CREATE INDEX tasks_fair_running_idx ON coremachine.tasks (fair_running_key) WHERE fair_running_key IS NOT NULL;
