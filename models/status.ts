import { z } from 'zod';
import { JOB_STATUSES, STAGE_STATUSES, TASK_STATUSES } from './status-values';

/** Job and task lifecycles: the zod enums over the lists and tables in status-values.ts. */
export {
  JOB_STATUSES,
  TASK_STATUSES,
  STAGE_STATUSES,
  JOB_TRANSITIONS,
  TASK_TRANSITIONS,
  FINAL_JOB_STATUSES,
  ENDED_JOB_STATUSES,
  ACTIVE_JOB_STATUSES,
  RERUNNABLE_JOB_STATUSES,
  isJobTransitionAllowed,
  isTaskTransitionAllowed,
  jobStatusesLeadingTo,
} from './status-values';

export const JobStatus = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof JobStatus>;

export const TaskStatus = z.enum(TASK_STATUSES);
export type TaskStatus = z.infer<typeof TaskStatus>;

export const StageStatus = z.enum(STAGE_STATUSES);
export type StageStatus = z.infer<typeof StageStatus>;
