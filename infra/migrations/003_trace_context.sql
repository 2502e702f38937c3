-- W3C trace context of the span that submitted the job. Every message of the job carries it, so
-- one trace follows the job across every queue hop, however messages are batched.
ALTER TABLE coremachine.jobs ADD COLUMN traceparent text;
ALTER TABLE coremachine.outbox ADD COLUMN traceparent text;
