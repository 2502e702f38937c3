-- A lease lost because its host died (scale-in, out of memory, a platform upgrade) or
-- stopped renewing is not a handler attempt: the task is re-queued at the same attempt and the
-- loss counted here, and only after a bounded number of losses does it fail with LeaseExpired.
ALTER TABLE coremachine.tasks ADD COLUMN lease_losses int NOT NULL DEFAULT 0 CHECK (lease_losses >= 0);
