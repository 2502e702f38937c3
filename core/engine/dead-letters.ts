import { JobQueueMessage, TaskQueueMessage, type ErrorShape } from '../../models';
import { describeInputIssues, findUnsafeJson, storableText } from '../../models/http-input';
import type { Queryable } from '../db/pool';
import { findJob, lockJobs, transitionJob } from '../state/jobs-store';
import { settleTasks, takeOverTask, cancelOpenTasks } from '../state/tasks-store';
import { failJob } from './stage-advance';
import { applySettledTasks, type SettleDeps } from './settle';
import { insertDeadLetter } from '../state/dead-letters-store';
import type { OutboxIntent } from './outbox';

export interface DeadLetter {
  queue: string;
  messageId?: string | undefined;
  body: unknown;
  reason: string;
  description: string;
}

export type DeadLetterOutcome = 'task-failed' | 'job-failed' | 'recorded';

/**
 * A dead letter is recorded whatever its body holds: one that jsonb cannot take (a NUL or a lone
 * surrogate in a string, nesting past MAX_JSON_DEPTH) is kept as its JSON text inside a JSON
 * string, with what was wrong, instead of failing the insert on every retry forever.
 */
export function storableBody(body: unknown): unknown {
  const issues = findUnsafeJson(body);
  if (issues.length === 0) return body;
  return { unstorableBody: JSON.stringify(body) ?? null, issues: issues.map((issue) => describeInputIssues([issue])) };
}

/**
 * A dead-lettered message must never leave its job PROCESSING: the message is recorded where an
 * operator sees it, and the task it pointed at (or the job, for a job message) becomes FAILED
 * with the reason, through the same counting and failure policy as any failed task.
 */
export async function processDeadLetter(db: Queryable, deps: SettleDeps, letter: DeadLetter): Promise<{ outcome: DeadLetterOutcome; intents: OutboxIntent[] }> {
  const task = TaskQueueMessage.safeParse(letter.body);
  const job = task.success ? undefined : JobQueueMessage.safeParse(letter.body);
  const jobId = task.success ? task.data.jobId : job?.success ? job.data.jobId : null;
  await insertDeadLetter(db, {
    queue: storableText(letter.queue),
    messageId: letter.messageId === undefined ? null : storableText(letter.messageId),
    body: storableBody(letter.body),
    reason: storableText(letter.reason),
    description: storableText(letter.description),
    jobId,
    taskId: task.success ? task.data.taskId : null,
  });
  const error: ErrorShape = { type: 'DeadLettered', message: `message dead-lettered: ${letter.reason}: ${letter.description}` };

  if (task.success) {
    // Lock order job → tasks → stage, as everywhere.
    await lockJobs(db, [task.data.jobId]);
    const claimId = await takeOverTask(db, task.data.taskId, task.data.attempt);
    if (!claimId) return { outcome: 'recorded', intents: [] };
    const settled = await settleTasks(db, [{ taskId: task.data.taskId, jobId: task.data.jobId, claimId, error: { ...error, stage: task.data.stage, taskId: task.data.taskId } }]);
    deps.logger.error('task failed: its message was dead-lettered', { jobId, taskId: task.data.taskId, stage: task.data.stage, reason: letter.reason });
    return { outcome: 'task-failed', intents: await applySettledTasks(db, deps, settled) };
  }

  if (job?.success) {
    const row = await findJob(db, job.data.jobId, true);
    if (!row || row.stage !== job.data.stage) return { outcome: 'recorded', intents: [] };
    const failure = { ...error, stage: row.stage };
    if (row.status === 'PROCESSING') {
      await failJob(db, deps, row.job_id, row.stage, failure);
    } else if (row.status === 'QUEUED') {
      const failed = await transitionJob(db, row.job_id, 'QUEUED', 'FAILED', { atStage: row.stage, error: failure });
      if (failed) {
        deps.events?.push({ name: 'JobTransition', attributes: { jobId: row.job_id, jobType: row.job_type, from: 'QUEUED', to: 'FAILED', stage: row.stage, errorType: failure.type }, outcome: { error: failure } });
      }
      await cancelOpenTasks(db, row.job_id);
      deps.logger.error('job failed: its message was dead-lettered', { jobId: row.job_id, stage: row.stage, reason: letter.reason });
    } else return { outcome: 'recorded', intents: [] };
    return { outcome: 'job-failed', intents: [] };
  }
  deps.logger.error('unparseable message dead-lettered', { queue: letter.queue, messageId: letter.messageId, reason: letter.reason });
  return { outcome: 'recorded', intents: [] };
}
