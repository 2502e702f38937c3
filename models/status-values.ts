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
  // COMPLETED | COMPLETED_WITH_ERRORS → QUEUED: only an operator's targeted re-run
  // (core/engine/rerun.ts) makes it. Chosen tasks of a finished stage run again and the stages
  // after it and finalize are recomputed from their new results, so the job runs again from that
  // stage. Nothing the engine does by itself leads out of these: they stay final (below).
  COMPLETED: ['QUEUED'],
  COMPLETED_WITH_ERRORS: ['QUEUED'],
  CANCELLED: [],
};

/**
 * Where a targeted re-run starts from: a job that ended with its stages' results kept. FAILED →
 * QUEUED is the operator retry's transition as well; CANCELLED is refused (a cancel is final).
 */
export const RERUNNABLE_JOB_STATUSES: readonly Job[] = ['COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED'];

/** Statuses whose one way out is the re-run: every transition from them leads to QUEUED and only a re-run makes it. */
const RERUN_ONLY: readonly Job[] = ['COMPLETED', 'COMPLETED_WITH_ERRORS'];

/**
 * CANCELLED → QUEUED exists only for the operator retry of a FAILED job (and the re-run of its
 * failed stage): fail-fast cancels the stage's unstarted tasks, and running that stage again must
 * run them. A task of a CANCELLED job is never re-queued, because a CANCELLED job is terminal.
 * COMPLETED → QUEUED is the targeted re-run's alone (core/engine/rerun.ts): an operator chose the
 * task to run again, in a job that has ended; its result is replaced by the new run's.
 */
export const TASK_TRANSITIONS: Readonly<Record<Task, readonly Task[]>> = {
  QUEUED: ['PROCESSING', 'CANCELLED'],
  PROCESSING: ['COMPLETED', 'FAILED', 'QUEUED', 'CANCELLED'],
  FAILED: ['QUEUED'],
  CANCELLED: ['QUEUED'],
  COMPLETED: ['QUEUED'],
};

/**
 * Done: the engine never moves these again and no control action applies; only an operator's
 * re-run leads out of COMPLETED and COMPLETED_WITH_ERRORS (derived from JOB_TRANSITIONS).
 */
export const FINAL_JOB_STATUSES: readonly Job[] = JOB_STATUSES.filter((status) =>
  JOB_TRANSITIONS[status].every((to) => to === 'QUEUED' && RERUN_ONLY.includes(status)),
);

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
