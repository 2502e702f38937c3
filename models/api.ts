import { z } from 'zod';
import { CONTROL_ACTION_NAMES } from './control-actions';
import { ErrorShape } from './error-shape';
import { INT4_MAX, integerInput, JobId, JobTypeName, MAX_SAFE_ID, PAGE_LIMITS, safeText, TaskId } from './http-input';
import { SIGNAL_NAME } from './job-definition';
import { CreatedBy, JobName, LabelFilters } from './job-labels';
import { JobStatus, TaskStatus } from './status';

/** Every error response body: `{error:{type, message, ...}}`. */
export const ErrorBody = z.object({ error: ErrorShape });
export type ErrorBody = z.infer<typeof ErrorBody>;

/** What a jobs-list cursor decodes to: the last row's creation time (ISO, to the microsecond) and id (see core/state/jobs-store.ts). */
const CursorPayload = z.tuple([z.iso.datetime(), JobId]);

/** True for a cursor the API could have returned: base64url of JSON `[createdAt, jobId]`. */
export function isWellFormedJobCursor(cursor: string): boolean {
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) return false;
  try {
    return CursorPayload.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))).success;
  } catch {
    // Not JSON at all: the same answer as JSON of the wrong shape.
    return false;
  }
}

export const ListJobsQuery = z.object({
  status: JobStatus.optional(),
  jobType: JobTypeName.optional(),
  limit: integerInput(1, PAGE_LIMITS.jobs).default(50),
  cursor: safeText(512).refine(isWellFormedJobCursor, 'cursor is not one this API returned: pass nextCursor back unchanged').optional(),
  /** `key:value`, repeatable: jobs that carry every one of these labels. */
  label: LabelFilters.optional(),
  createdBy: CreatedBy.optional(),
  /** A prefix: jobs whose name starts with it (case-sensitive; the whole name matches too). */
  name: JobName.optional(),
});
export type ListJobsQuery = z.infer<typeof ListJobsQuery>;

export const ListTasksQuery = z.object({
  stage: integerInput(1, INT4_MAX).optional(),
  status: TaskStatus.optional(),
  limit: integerInput(1, PAGE_LIMITS.tasks).default(1000),
  afterIndex: integerInput(-1, INT4_MAX).default(-1),
});
export type ListTasksQuery = z.infer<typeof ListTasksQuery>;

/**
 * GET jobs/{jobId}/events. Ascending from afterId by default (follow a trail as it grows);
 * order=desc reads from the newest end, and beforeId pages back from there. Ids are bigserial
 * values, so bounded to safe integers.
 */
export const ListEventsQuery = z.object({
  afterId: integerInput(0, MAX_SAFE_ID).default(0),
  beforeId: integerInput(1, MAX_SAFE_ID).optional(),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: integerInput(1, PAGE_LIMITS.events).default(1000),
});
export type ListEventsQuery = z.infer<typeof ListEventsQuery>;

export const ListDeadLettersQuery = z.object({
  jobId: JobId.optional(),
  beforeId: integerInput(1, MAX_SAFE_ID).optional(),
  limit: integerInput(1, PAGE_LIMITS.deadLetters).default(100),
});
export type ListDeadLettersQuery = z.infer<typeof ListDeadLettersQuery>;

export const JobIdParams = z.object({ jobId: JobId });
export const JobTypeParams = z.object({ jobType: JobTypeName });
export const ControlParams = z.object({ jobId: JobId, action: z.enum(CONTROL_ACTION_NAMES) });
export type ControlParams = z.infer<typeof ControlParams>;
export const TaskIdParams = z.object({ taskId: TaskId });
/** POST jobs/{jobId}/signals/{name}: the name as job builders' `.waitFor({ name })` allows it. */
export const SignalName = z.string().regex(SIGNAL_NAME, `a signal name matches ${String(SIGNAL_NAME)}`);
export const SignalParams = z.object({ jobId: JobId, name: SignalName });
export type SignalParams = z.infer<typeof SignalParams>;
