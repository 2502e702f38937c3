-- W3C trace context of the span that submitted the job. Every message of the job carries it, so
-- one trace follows the job across every queue hop, however messages are batched.
ALTER TABLE coremachine.jobs ADD COLUMN traceparent text;
ALTER TABLE coremachine.outbox ADD COLUMN traceparent text;

-- When the janitor last examined a stalled job: a job is explained (and given lost messages) at
-- most once per stall window, so a long backlog cannot turn re-sends into a message storm.
ALTER TABLE coremachine.jobs ADD COLUMN nudged_at timestamptz;
