-- Targeted re-runs (core/engine/rerun.ts): an operator runs chosen tasks of a finished stage of an
-- ended job again, and the stages after it and finalize are recomputed from their new results.
--
-- `reruns` counts a job's re-runs. It is also what makes the messages of a re-run new: the stages
-- after the re-run stage are started and fanned out again, and their job and task messages would
-- otherwise carry the ids the first run's had (`${jobId}:s${stage}`, `${taskId}:a1`), which Service
-- Bus duplicate detection drops within its window (10 minutes). A job that was re-run tags them with
-- `rerun<n>`. A constant default makes the column metadata only: no table is rewritten.
ALTER TABLE coremachine.jobs ADD COLUMN reruns integer NOT NULL DEFAULT 0;
ALTER TABLE coremachine.jobs ADD CONSTRAINT jobs_reruns_not_negative CHECK (reruns >= 0) NOT VALID;

-- The event trail says why a finished job runs again: one event of entity 'rerun' per re-run, with
-- the stage, what was chosen (filter, count, the first ids) and the stages recomputed in `detail`.
-- It is written in the re-run's transaction, beside the job, stage and task transitions the
-- triggers record. The entity list keeps every earlier entity; NOT VALID, as every row already
-- there satisfies it, so the events table is not scanned under lock.
ALTER TABLE coremachine.events DROP CONSTRAINT events_entity_check;
ALTER TABLE coremachine.events ADD CONSTRAINT events_entity_check CHECK (entity IN ('job','stage','task','schedule','signal','rerun')) NOT VALID;
