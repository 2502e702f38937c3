/**
 * Job, stage and task lifecycles as plain data: the only place these rules live. No zod here, so
 * the dashboard's browser bundle can import the same tables the engine enforces (status.ts wraps
 * the lists in zod enums for validation).
 */
export const JOB_STATUSES = ['QUEUED', 'PROCESSING', 'COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED', 'PAUSED'] as const;
export const TASK_STATUSES = ['QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export const STAGE_STATUSES = ['PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;

type Job = (typeof JOB_STATUSES)[number];
type Task = (typeof TASK_STATUSES)[number];

export const JOB_TRANSITIONS: Readonly<Record<Job, readonly Job[]>> = {
  QUEUED: ['PROCESSING', 'CANCELLED', 'PAUSED', 'FAILED'],
  PROCESSING: ['QUEUED', 'COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED', 'PAUSED'],
  // PAUSED → FAILED: a deadline keeps running while a job is paused (models/deadline.ts), so a
  // paused job past it fails with a Timeout; a pause can never extend a deadline.
  PAUSED: ['QUEUED', 'CANCELLED', 'FAILED'],
  FAILED: ['QUEUED'],
  COMPLETED: [],
  COMPLETED_WITH_ERRORS: [],
  CANCELLED: [],
};

/**
 * CANCELLED → QUEUED exists only for the operator retry of a FAILED job: fail-fast cancels the
 * stage's unstarted tasks, and retrying that stage must run them. A task of a CANCELLED job is
 * never re-queued, because a CANCELLED job is terminal.
 */
export const TASK_TRANSITIONS: Readonly<Record<Task, readonly Task[]>> = {
  QUEUED: ['PROCESSING', 'CANCELLED'],
  PROCESSING: ['COMPLETED', 'FAILED', 'QUEUED', 'CANCELLED'],
  FAILED: ['QUEUED'],
  CANCELLED: ['QUEUED'],
  COMPLETED: [],
};

/** No transition leads out of these: the job is done for good (derived from JOB_TRANSITIONS). */
export const FINAL_JOB_STATUSES: readonly Job[] = JOB_STATUSES.filter((status) => JOB_TRANSITIONS[status].length === 0);

/**
 * Nothing runs in these and nothing changes without an operator: the final statuses and FAILED,
 * which only an operator retry moves. A waiting client or the CLI stops here, a finished-at time is
 * set, and retention or DELETE may remove the job.
 */
export const ENDED_JOB_STATUSES: readonly Job[] = JOB_STATUSES.filter((status) => FINAL_JOB_STATUSES.includes(status) || status === 'FAILED');

/**
 * Statuses in which a job changes without an operator: its stages run or its tasks are still
 * finishing (a PAUSED job's running tasks complete and count). The complement of the ended ones.
 */
export const ACTIVE_JOB_STATUSES: readonly Job[] = JOB_STATUSES.filter((status) => !ENDED_JOB_STATUSES.includes(status));

export function isJobTransitionAllowed(from: Job, to: Job): boolean {
  return JOB_TRANSITIONS[from].includes(to);
}

export function isTaskTransitionAllowed(from: Task, to: Task): boolean {
  return TASK_TRANSITIONS[from].includes(to);
}

/** Every job status with a transition to `to`: the statuses an action that leads there applies to. */
export function jobStatusesLeadingTo(to: Job): Job[] {
  return JOB_STATUSES.filter((from) => isJobTransitionAllowed(from, to));
}
