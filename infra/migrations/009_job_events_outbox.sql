-- Job events out: an outbox row of kind 'event' carries one job event (models/job-event.ts), written
-- in the same transaction as the transition it reports and published to the events topic after commit.
ALTER TABLE coremachine.outbox DROP CONSTRAINT IF EXISTS outbox_kind_check;
ALTER TABLE coremachine.outbox ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('job', 'stage_tasks', 'task', 'event'));
