import { z } from 'zod';
import { ErrorShape } from './error-shape';
import { JobStatus, TaskStatus } from './status';

/** Every error response body: `{error:{type, message, ...}}`. */
export const ErrorBody = z.object({ error: ErrorShape });
export type ErrorBody = z.infer<typeof ErrorBody>;

export const ListJobsQuery = z.object({
  status: JobStatus.optional(),
  jobType: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().min(1).optional(),
});
export type ListJobsQuery = z.infer<typeof ListJobsQuery>;

export const ListTasksQuery = z.object({
  stage: z.coerce.number().int().min(1).optional(),
  status: TaskStatus.optional(),
  limit: z.coerce.number().int().min(1).max(5000).default(1000),
  afterIndex: z.coerce.number().int().min(-1).default(-1),
});
export type ListTasksQuery = z.infer<typeof ListTasksQuery>;

/**
 * GET jobs/{jobId}/events. Ascending from afterId by default (follow a trail as it grows);
 * order=desc reads from the newest end, and beforeId pages back from there. Ids are bigserial
 * values, so bounded to safe integers.
 */
export const ListEventsQuery = z.object({
  afterId: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  beforeId: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: z.coerce.number().int().min(1).max(5000).default(1000),
});
export type ListEventsQuery = z.infer<typeof ListEventsQuery>;
