import { z } from 'zod';
import { ErrorShape } from './error-shape';
import { Priority } from './job-priority';
import { PayloadLink } from './payload-link';
import { JobStatus, StageStatus, TaskStatus } from './status';

export const JobRecord = z.object({
  jobId: z.string(),
  jobType: z.string(),
  /** The version of the job type it runs until it ends. */
  version: z.number().int().min(1),
  status: JobStatus,
  stage: z.number().int().min(1),
  totalStages: z.number().int().min(1),
  parameters: z.unknown(),
  /** The Idempotency-Key it was submitted with (schedules use `schedule:<name>:<tick>`), or null. */
  idempotencyKey: z.string().nullable(),
  result: z.unknown().nullable(),
  /** Only when the result is in the payload store (docs/payloads.md): `result` is null, this links to it. */
  resultRef: PayloadLink.optional(),
  error: ErrorShape.nullable(),
  createdAt: z.date(),
  updatedAt: z.date(),
  startedAt: z.date().nullable(),
  finishedAt: z.date().nullable(),
  /** The job's effective timeout (definition or submission override), or null when it has none. */
  timeoutSeconds: z.number().int().nullable(),
  /** When the whole job times out, and when its current stage does (null: no such deadline). */
  deadline: z.date().nullable(),
  stageDeadline: z.date().nullable(),
  /** Its display name, who created it, and its labels (models/job-labels.ts): null and {} when it was given none. */
  name: z.string().nullable(),
  createdBy: z.string().nullable(),
  labels: z.record(z.string(), z.string()),
  /**
   * Its priority class and fairness key with weight (models/job-priority.ts): all null when the job
   * carries neither (it is not in the fair-share scheme); a key of null with a priority shares the
   * keyless jobs' share.
   */
  priority: Priority.nullable(),
  fairnessKey: z.string().nullable(),
  fairnessWeight: z.number().int().nullable(),
});
export type JobRecord = z.infer<typeof JobRecord>;

export const TaskRecord = z.object({
  taskId: z.string(),
  jobId: z.string(),
  stage: z.number().int().min(1),
  taskIndex: z.number().int().min(0),
  taskType: z.string(),
  status: TaskStatus,
  parameters: z.unknown(),
  /** Only when the parameters are in the payload store: `parameters` is null, this links to them. */
  parametersRef: PayloadLink.optional(),
  result: z.unknown().nullable(),
  /** Only when the result is in the payload store: `result` is null, this links to it. */
  resultRef: PayloadLink.optional(),
  error: ErrorShape.nullable(),
  attempt: z.number().int().min(0),
  createdAt: z.date(),
  startedAt: z.date().nullable(),
  finishedAt: z.date().nullable(),
  /** The global concurrency slot this task counts against (`scope:key`); null when its type has no limit. */
  limitKey: z.string().nullable(),
  /** Leases lost because the host running it died or stopped renewing: not attempts, bounded (LeaseExpired past the bound). */
  leaseLosses: z.number().int().min(0),
  /**
   * Only when the task logged (ctx.log): lines recorded over its attempts, and lines its attempts
   * dropped over their cap. GET jobs/{jobId}/tasks/{taskId}/logs reads the lines.
   */
  logs: z.object({ lines: z.number().int().min(0), dropped: z.number().int().min(0) }).optional(),
});
export type TaskRecord = z.infer<typeof TaskRecord>;

/** Per-stage progress: the counters the stage advance is decided on. */
export const StageProgress = z.object({
  stage: z.number().int().min(1),
  name: z.string(),
  status: StageStatus,
  total: z.number().int().min(0),
  completed: z.number().int().min(0),
  failed: z.number().int().min(0),
  startedAt: z.date().nullable(),
  finishedAt: z.date().nullable(),
  /** Only on a stage that waits for a signal (`.waitFor`): the signal's name. Total 1, completed 1 once it arrived. */
  signal: z.string().optional(),
});
export type StageProgress = z.infer<typeof StageProgress>;

export const JobView = JobRecord.extend({
  stages: z.array(StageProgress),
  /** Set while the job cannot go on: its version is not registered by this deployment, and why. */
  waitingFor: z.string().optional(),
});
export type JobView = z.infer<typeof JobView>;
