-- Every query that filtered on (job_id, stage, status) is served by the unique
-- (job_id, stage, task_index) index. A task's claim and settle change its status, so neither can be
-- a HOT update: each writes an entry into every index. One index fewer is less WAL and CPU per task.
DROP INDEX coremachine.tasks_status_idx;
