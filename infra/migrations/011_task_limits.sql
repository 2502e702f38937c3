-- Issue 13, part 1: global concurrency and rate limits of task types.
--
-- limit_key is the task's slot key, `${scope}:${key}`, computed once when the task is created;
-- NULL for task types without limits. A slot is not a counter kept beside the tasks: it IS a
-- PROCESSING task with that key. Every exit from PROCESSING (completion, failure, retry, lease
-- expiry, cancel, release, dead letter, job deletion) frees it in the same statement that moves the
-- task, so no path can forget to release a slot and no slot can leak. Claims count the holders
-- under a transaction-scoped advisory lock on the key (core/state/limits-store.ts).
ALTER TABLE coremachine.tasks ADD COLUMN limit_key text CHECK (length(limit_key) <= 400);
-- The count of a key's holders reads only this index: it holds only limited tasks that run now.
CREATE INDEX tasks_limit_holders_idx ON coremachine.tasks (limit_key) WHERE status = 'PROCESSING' AND limit_key IS NOT NULL;

-- Rate limits: one token bucket per slot key, refilled by elapsed time whenever a claim reads it.
CREATE TABLE coremachine.task_rate_buckets (
  limit_key    text PRIMARY KEY,
  tokens       double precision NOT NULL,
  refilled_at  timestamptz NOT NULL
);

-- When a slot frees, the engine that freed it wakes the key's oldest waiting tasks (sends their
-- messages now instead of leaving them to their deferral backoff): found through this index.
CREATE INDEX tasks_limit_waiting_idx ON coremachine.tasks (limit_key, created_at, task_index) WHERE status = 'QUEUED' AND NOT remote AND limit_key IS NOT NULL;
