import { z } from 'zod';

/** Job and task lifecycles. The transition tables below are the only place these rules live. */
export const JobStatus = z.enum([
  'QUEUED',
  'PROCESSING',
  'COMPLETED',
  'COMPLETED_WITH_ERRORS',
  'FAILED',
  'CANCELLED',
  'PAUSED',
]);
export type JobStatus = z.infer<typeof JobStatus>;

export const TaskStatus = z.enum(['QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED']);
export type TaskStatus = z.infer<typeof TaskStatus>;

export const StageStatus = z.enum(['PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED']);
export type StageStatus = z.infer<typeof StageStatus>;

export const JOB_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  QUEUED: ['PROCESSING', 'CANCELLED', 'PAUSED', 'FAILED'],
  PROCESSING: ['QUEUED', 'COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED', 'PAUSED'],
  PAUSED: ['QUEUED', 'CANCELLED'],
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
export const TASK_TRANSITIONS: Readonly<Record<TaskStatus, readonly TaskStatus[]>> = {
  QUEUED: ['PROCESSING', 'CANCELLED'],
  PROCESSING: ['COMPLETED', 'FAILED', 'QUEUED', 'CANCELLED'],
  FAILED: ['QUEUED'],
  CANCELLED: ['QUEUED'],
  COMPLETED: [],
};

export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['COMPLETED', 'COMPLETED_WITH_ERRORS', 'CANCELLED'];
export const TERMINAL_TASK_STATUSES: readonly TaskStatus[] = ['COMPLETED'];

export function isJobTransitionAllowed(from: JobStatus, to: JobStatus): boolean {
  return JOB_TRANSITIONS[from].includes(to);
}

export function isTaskTransitionAllowed(from: TaskStatus, to: TaskStatus): boolean {
  return TASK_TRANSITIONS[from].includes(to);
}
