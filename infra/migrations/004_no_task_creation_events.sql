-- A task's creation is not a transition: the stage's own event (stage started, with its total)
-- already records the fan-out, and one event per created task cost ~35 ms per 10,000-task stage
-- on the hand-over path. Every task transition (claim, retry, completion, failure, cancel) is
-- still written by tasks_events_update.
DROP TRIGGER tasks_events_insert ON coremachine.tasks;
