import { z } from 'zod';
import { JobRecord, StageProgress } from './records';

/**
 * The counters of the stage a job is at, as GET /api/jobs lists them: enough for a progress bar
 * per row without reading every stage of every job (GET /api/jobs/{jobId} has those).
 */
export const CurrentStageCounts = StageProgress.pick({ stage: true, name: true, status: true, total: true, completed: true, failed: true, signal: true });
export type CurrentStageCounts = z.infer<typeof CurrentStageCounts>;

/**
 * One row of the job list: the job, and its current stage's counters, or null while that stage has
 * not started (a job just submitted, or between two stages) and so has no counts yet.
 */
export const JobListItem = JobRecord.extend({ progress: CurrentStageCounts.nullable() });
export type JobListItem = z.infer<typeof JobListItem>;

/** GET /api/jobs: newest first; pass nextCursor back for the next page (null on the last one). */
export const JobListPage = z.object({ jobs: z.array(JobListItem), nextCursor: z.string().nullable() });
export type JobListPage = z.infer<typeof JobListPage>;
