import { z } from 'zod';
import { isWellFormedJobCursor } from './api';
import { CONTROL_ACTIONS } from './control-actions';
import { integerInput, JobTypeName, safeText } from './http-input';
import { LabelFilters } from './job-labels';
import { ENDED_JOB_STATUSES, JOB_STATUSES } from './status-values';
import { JobStatus } from './status';

/**
 * Bulk operations (core/engine/bulk-jobs.ts): cancel, retry or delete every job a filter matches,
 * each job in its own transaction through the same function as the one-job action, so a job that
 * cannot take the action is listed with the reason and the others go on. Checked here before any
 * SQL; POST bulk/jobs/{action} takes it as its body, `coremachine bulk` builds it from flags.
 */

export const BULK_ACTIONS = ['cancel', 'retry', 'delete'] as const;
export type BulkAction = (typeof BULK_ACTIONS)[number];
export const BulkAction = z.enum(BULK_ACTIONS);

/**
 * The statuses each action applies to, read from the one-job actions' rules: what a dry run
 * answers. The action itself decides again under the job's row lock.
 */
export const BULK_ACTION_FROM: Readonly<Record<BulkAction, readonly (typeof JOB_STATUSES)[number][]>> = {
  cancel: CONTROL_ACTIONS.cancel.from,
  retry: CONTROL_ACTIONS.retry.from,
  // DELETE jobs/{jobId} takes an ended job (core/state/retention-store.ts DELETABLE_JOB_STATUSES).
  delete: ENDED_JOB_STATUSES,
};

/** Jobs one call acts on; more matching jobs are answered with a cursor for the next call. */
export const MAX_BULK_JOBS = 1_000;

/** An instant with its offset (`2026-05-01T00:00:00Z`, `…+02:00`): never a local time read in the server's zone. */
const Instant = z.iso.datetime({ offset: true, error: 'a time is ISO 8601 with a zone, e.g. 2026-05-01T00:00:00Z' });

/**
 * Which jobs: every given field must match. At least one is required, so an empty filter cannot
 * act on every job by accident.
 */
export const BulkFilter = z
  .strictObject({
    jobType: JobTypeName.optional(),
    /** One status, or several (any of them). */
    status: z
      .preprocess((value) => (typeof value === 'string' ? [value] : value), z.array(JobStatus).min(1).max(JOB_STATUSES.length))
      .transform((statuses) => [...new Set(statuses)])
      .optional(),
    /** `key:value`, once or repeated: a job must carry every one. */
    label: LabelFilters.optional(),
    /** Created at or after this instant. */
    createdAfter: Instant.optional(),
    /** Created before this instant. */
    createdBefore: Instant.optional(),
  })
  .refine((filter) => Object.values(filter).some((value) => value !== undefined), {
    message: 'give at least one filter (jobType, status, label, createdAfter, createdBefore): an empty filter would match every job',
  })
  .refine((filter) => !filter.createdAfter || !filter.createdBefore || Date.parse(filter.createdAfter) < Date.parse(filter.createdBefore), {
    message: 'createdAfter must be before createdBefore',
    path: ['createdAfter'],
  });
export type BulkFilter = z.output<typeof BulkFilter>;

export const BulkRequest = z.strictObject({
  filter: BulkFilter,
  /** Only say what would change; change nothing. */
  dryRun: z.boolean().default(false),
  /** Jobs this call takes, newest first (default and most MAX_BULK_JOBS). */
  limit: integerInput(1, MAX_BULK_JOBS).default(MAX_BULK_JOBS),
  /** The `nextCursor` of the previous call with the same filter: go on after the jobs it took. */
  cursor: safeText(512).refine(isWellFormedJobCursor, 'cursor is not one this API returned: pass nextCursor back unchanged').optional(),
});
export type BulkRequest = z.input<typeof BulkRequest>;
export type ParsedBulkRequest = z.output<typeof BulkRequest>;

export const BulkParams = z.object({ action: BulkAction });

/** A job the action did not apply to, and why (its status, or that it was gone). */
export interface BulkRefusal {
  jobId: string;
  status: string;
  reason: string;
}

/** What a bulk call did, or with dryRun would do, to the jobs it took (at most `limit`). */
export interface BulkOutcome {
  action: BulkAction;
  dryRun: boolean;
  counts: { matched: number; changed: number; refused: number };
  /** The jobs the action changed (or would change). */
  changed: string[];
  refused: BulkRefusal[];
  /** More jobs match: send the same request again with this cursor. */
  nextCursor: string | null;
}
