import { isJobTransitionAllowed, isTaskTransitionAllowed, type JobStatus, type TaskStatus } from '../../models';
import { InvalidTransitionError } from '../errors';

/** Checked before every compare-and-set, so a forbidden change raises before touching a row. */
export function assertJobTransition(jobId: string, from: JobStatus, to: JobStatus): void {
  if (!isJobTransitionAllowed(from, to)) throw new InvalidTransitionError('job', jobId, from, to);
}

export function assertTaskTransition(taskId: string, from: TaskStatus, to: TaskStatus): void {
  if (!isTaskTransitionAllowed(from, to)) throw new InvalidTransitionError('task', taskId, from, to);
}
