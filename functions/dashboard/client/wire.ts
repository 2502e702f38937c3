import type { ErrorShape } from '../../../models/error-shape';
import type { EventRecord } from '../../../models/events';
import type { JobView, TaskRecord } from '../../../models/records';

/** What JSON makes of a record: dates arrive as ISO strings. */
type Json<T> = T extends Date ? string : T extends readonly (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;

/** The API's bodies as the page receives them, typed from the models the server builds them from. */
export type JobJson = Json<JobView>;
export type StageJson = JobJson['stages'][number];
export type TaskJson = Json<TaskRecord>;
export type ErrorJson = ErrorShape;

/** One row of GET /api/jobs/{id}/events (models/events.ts EventRecord, as JSON). */
export type EventJson = Json<EventRecord>;

/** GET /api/jobs (models/job-list.ts JobListPage, as JSON): each job with its current stage's counters. */
export type JobPage = Json<import('../../../models/job-list').JobListPage>;
export type JobListJson = JobPage['jobs'][number];

/** One row of GET /api/schedules (models/schedule-definition.ts ScheduleView, as JSON). */
export type ScheduleJson = Json<import('../../../models/schedule-definition').ScheduleView>;

/** One row of GET /api/workers (models/workers.ts WorkerView, as JSON). */
export type WorkerJson = Json<import('../../../models/workers').WorkerView>;

/** GET /api/jobs/{id}/tasks/{taskId}/logs (models/task-log.ts TaskLogPage, as JSON). */
export type TaskLogPageJson = Json<import('../../../models/task-log').TaskLogPage>;
