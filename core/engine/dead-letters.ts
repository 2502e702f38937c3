import { JobQueueMessage, PackedTaskMessage, TaskQueueMessage, jobMessageId, taskMessageId, type ErrorShape } from '../../models';
import { describeIssues, storableText, unstorableJsonIssues } from '../../models/storable';
import type { Queryable } from '../db/pool';
import { findJob, lockJobs, transitionJob } from '../state/jobs-store';
import { settleTasks, takeOverTask, cancelOpenTasks } from '../state/tasks-store';
import { JOBS_QUEUE, TASKS_QUEUE } from '../transport/transport';
import { originalMessageId } from '../message-settlement';
import { failJob } from './stage-advance';
import { followSettledTasks } from './task-outcomes';
import { NOTHING_AFTER_COMMIT, type AfterCommit, type EngineContext } from './after-commit';
import { insertDeadLetter } from '../state/dead-letters-store';

export interface DeadLetter {
  /** The queue the letter was dead-lettered from, as the host's binding says, never the body. */
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
  const issues = unstorableJsonIssues(body);
  if (issues.length === 0) return body;
  return { unstorableBody: JSON.stringify(body) ?? null, issues: issues.map((issue) => describeIssues([issue])) };
}

/** What a letter may act on: the engine message it is, or why it is only recorded. */
type LetterAuthority = { kind: 'task'; message: TaskQueueMessage } | { kind: 'job'; message: JobQueueMessage } | { kind: 'record'; why: string };

/**
 * The queue a letter came from decides what it may touch. Anyone allowed to send submissions can
 * put any body on the submissions queue, so its letters (and those of any queue but the engine's
 * own two) are records only, never read as engine messages. A letter of the jobs or tasks queue
 * acts only when it is what the engine sent there: the right shape for that queue, under the
 * message id the engine derives from that very body (a rescheduled copy's suffix aside).
 */
export function letterAuthority(letter: DeadLetter): LetterAuthority {
  if (letter.queue === TASKS_QUEUE) {
    // A pack is split, never dead-lettered, by the engine (core/transport/settle-batch.ts); one that
    // gets here anyway (expired, or a split that kept failing) fails none of its tasks: they stay
    // QUEUED, and the janitor sends them again once their job makes no progress.
    if (PackedTaskMessage.safeParse(letter.body).success) return { kind: 'record', why: 'a pack of task messages: its tasks are sent again by the janitor' };
    const task = TaskQueueMessage.safeParse(letter.body);
    if (!task.success) return { kind: 'record', why: 'not a task message' };
    if (letter.messageId === undefined || originalMessageId(letter.messageId) !== taskMessageId(task.data)) {
      return { kind: 'record', why: `message id ${JSON.stringify(letter.messageId ?? null)} is not the one the engine gives this task message` };
    }
    return { kind: 'task', message: task.data };
  }
  if (letter.queue === JOBS_QUEUE) {
    const job = JobQueueMessage.safeParse(letter.body);
    if (!job.success) return { kind: 'record', why: 'not a job message' };
    if (letter.messageId === undefined || originalMessageId(letter.messageId) !== jobMessageId(job.data)) {
      return { kind: 'record', why: `message id ${JSON.stringify(letter.messageId ?? null)} is not the one the engine gives this job message` };
    }
    return { kind: 'job', message: job.data };
  }
  return { kind: 'record', why: `the ${letter.queue} queue does not carry engine messages` };
}

/**
 * A dead-lettered engine message must never leave its job PROCESSING: the message is recorded where
 * an operator sees it, and the task it pointed at (or the job, for a job message) becomes FAILED
 * with the reason, through the same counting and failure policy as any failed task. Only when the
 * letter is the engine's own (letterAuthority) and still names the task's current attempt or the
 * job's current stage and type; anything else is recorded and changes nothing.
 */
export async function processDeadLetter(
  db: Queryable,
  context: EngineContext,
  letter: DeadLetter,
): Promise<{ outcome: DeadLetterOutcome; after: AfterCommit }> {
  const authority = letterAuthority(letter);
  const task = authority.kind === 'task' ? authority.message : undefined;
  const job = authority.kind === 'job' ? authority.message : undefined;
  await insertDeadLetter(db, {
    queue: storableText(letter.queue),
    messageId: letter.messageId === undefined ? null : storableText(letter.messageId),
    body: storableBody(letter.body),
    reason: storableText(letter.reason),
    description: storableText(letter.description),
    jobId: task?.jobId ?? job?.jobId ?? null,
    taskId: task?.taskId ?? null,
  });
  if (authority.kind === 'record') {
    context.logger.warn('dead letter recorded', { queue: letter.queue, messageId: letter.messageId, reason: letter.reason, why: authority.why });
    return { outcome: 'recorded', after: NOTHING_AFTER_COMMIT };
  }
  const error: ErrorShape = { type: 'DeadLetteredError', message: `message dead-lettered: ${letter.reason}: ${letter.description}` };

  if (task) {
    // Lock order job → tasks → stage, as everywhere.
    await lockJobs(db, [task.jobId]);
    const claimId = await takeOverTask(db, task);
    if (!claimId) return { outcome: 'recorded', after: NOTHING_AFTER_COMMIT };
    const settled = await settleTasks(db, [{ taskId: task.taskId, jobId: task.jobId, claimId, error: { ...error, stage: task.stage, taskId: task.taskId } }]);
    context.logger.error('task failed: its message was dead-lettered', { jobId: task.jobId, taskId: task.taskId, stage: task.stage, reason: letter.reason });
    return { outcome: 'task-failed', after: followSettledTasks(settled) };
  }

  if (!job) return { outcome: 'recorded', after: NOTHING_AFTER_COMMIT };
  const row = await findJob(db, job.jobId, true);
  if (!row || row.stage !== job.stage || row.job_type !== job.jobType) return { outcome: 'recorded', after: NOTHING_AFTER_COMMIT };
  const failure = { ...error, stage: row.stage };
  if (row.status === 'PROCESSING') return { outcome: 'job-failed', after: (await failJob(db, context, row.job_id, row.stage, failure)).after };
  if (row.status !== 'QUEUED') return { outcome: 'recorded', after: NOTHING_AFTER_COMMIT };
  const failed = await transitionJob(db, row.job_id, 'QUEUED', 'FAILED', { atStage: row.stage, error: failure });
  await cancelOpenTasks(db, row.job_id);
  context.logger.error('job failed: its message was dead-lettered', { jobId: row.job_id, stage: row.stage, reason: letter.reason });
  if (!failed) return { outcome: 'job-failed', after: NOTHING_AFTER_COMMIT };
  const transition = {
    name: 'JobTransition' as const,
    attributes: { jobId: row.job_id, jobType: row.job_type, from: 'QUEUED', to: 'FAILED', stage: row.stage, errorType: failure.type },
    outcome: { error: failure },
  };
  return { outcome: 'job-failed', after: { ...NOTHING_AFTER_COMMIT, transitions: [transition] } };
}
