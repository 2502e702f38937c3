import { z } from 'zod';
import { INT4_MAX, integerInput, JobId, safeText, TaskId } from './http-input';
import type { JobView } from './records';
import type { ErrorShape } from './error-shape';

/**
 * A targeted re-run (core/engine/rerun.ts): chosen tasks of a finished stage of an ended job run
 * again, and what depends on them (the stages after it, finalize) is recomputed. The request is
 * checked here before any SQL; POST jobs/{jobId}/stages/{stage}/rerun takes it as its body (the
 * stage from the path), `coremachine rerun` builds it from flags.
 */

/** Tasks one re-run may choose: their rows are reset in one transaction under the job's row lock. */
export const MAX_RERUN_TASKS = 10_000;
/** Task ids a re-run's answer lists (the count is always exact). */
export const MAX_LISTED_RERUN_TASKS = 1_000;
/** How deep a result field's path may reach: `a.b.c` is 3. */
export const MAX_RESULT_PATH_SEGMENTS = 16;

/** The task statuses a re-run can choose by: the finished ones (a stage's cancelled tasks always run again). */
export const RERUN_TASK_STATUSES = ['COMPLETED', 'FAILED'] as const;

/**
 * `path.to.field` in a task's result (array elements by index: `items.0.ok`), compared as JSON
 * with `equals`. Only results kept in the row are read; one in the payload store never matches.
 */
export const ResultFieldFilter = z.strictObject({
  path: safeText(500)
    .regex(/^[^.]+(\.[^.]+)*$/, 'a result path is field names joined by dots, none of them empty (e.g. "quality.ok" or "items.0.id")')
    .refine((path) => path.split('.').length <= MAX_RESULT_PATH_SEGMENTS, `a result path has at most ${MAX_RESULT_PATH_SEGMENTS} fields`),
  equals: z.unknown().refine((value) => value !== undefined, 'equals is required: the JSON value the field must have'),
});
export type ResultFieldFilter = z.infer<typeof ResultFieldFilter>;

const selection = {
  /** These tasks of the stage (ids as the task list shows them). */
  taskIds: z
    .array(TaskId)
    .min(1, 'taskIds lists at least one task (leave it out to choose by status or result)')
    .max(MAX_RERUN_TASKS, `a re-run takes at most ${MAX_RERUN_TASKS} tasks`)
    .refine((ids) => new Set(ids).size === ids.length, 'taskIds lists a task twice')
    .optional(),
  /** The stage's tasks that ended so. */
  status: z.enum(RERUN_TASK_STATUSES).optional(),
  /** The stage's tasks whose result has this value at this path. */
  resultField: ResultFieldFilter.optional(),
  /** Only say what would change; change nothing. */
  dryRun: z.boolean().default(false),
};

const chooses = (request: { taskIds?: unknown; status?: unknown; resultField?: unknown }) =>
  request.taskIds !== undefined || request.status !== undefined || request.resultField !== undefined;
const CHOOSE_SOMETHING = {
  message: 'choose the tasks to re-run: taskIds, status or resultField (given together, a task must match all of them)',
  path: [] as PropertyKey[],
};

/** The HTTP body: the selection (the stage is in the path). */
export const RerunBody = z.strictObject(selection).refine(chooses, CHOOSE_SOMETHING);
export type RerunBody = z.input<typeof RerunBody>;

/** What CoreMachine.rerunTasks takes: the stage and the selection. */
export const RerunRequest = z.strictObject({ stage: integerInput(1, INT4_MAX), ...selection }).refine(chooses, CHOOSE_SOMETHING);
export type RerunRequest = z.input<typeof RerunRequest>;
export type ParsedRerunRequest = z.output<typeof RerunRequest>;

/** POST jobs/{jobId}/stages/{stage}/rerun */
export const RerunParams = z.object({ jobId: JobId, stage: integerInput(1, INT4_MAX) });

/** What a re-run did, or with dryRun would do. */
export interface RerunOutcome {
  jobId: string;
  stage: number;
  dryRun: boolean;
  /** The tasks the selection chose: each runs again. */
  selected: number;
  /** Their ids in task order, the first MAX_LISTED_RERUN_TASKS of them. */
  taskIds: string[];
  /** The stage's tasks that never finished (cancelled when the job failed): they run too, as an operator retry runs them. */
  unfinished: number;
  /** With resultField: the stage's tasks whose result is in the payload store, which the filter cannot read. */
  unexamined?: number;
  /** The stages after it: their tasks are deleted and fanned out again from the new results. Finalize always runs again. */
  recomputedStages: number[];
  /** How many re-runs the job has had, this one included (unchanged by a dry run). */
  reruns: number;
  /** Replaced values' payload blobs a failed delete left (the orphan sweep deletes them later), and why. */
  blobsLeft?: number;
  blobError?: ErrorShape;
  /** The job as it is now: QUEUED at the stage after a re-run, unchanged after a dry run. */
  job: JobView;
}

/** What the event trail records of a re-run (an event of entity 'rerun', `rerun` in GET jobs/{jobId}/events). */
export interface RerunEventDetail {
  rerun: number;
  selected: number;
  unfinished: number;
  /** The first 100 chosen ids; `selected` has the count. */
  taskIds: string[];
  filter: { taskIds?: number; status?: string; resultField?: { path: string; equals: unknown } };
  recomputedStages: number[];
}
