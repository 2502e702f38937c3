import { z } from 'zod';
import { INT4_MAX, integerInput, JobId, PAGE_LIMITS, TaskId } from './http-input';
import { unstorableJsonIssues } from './storable';

/**
 * Task logs: the lines a handler writes with `ctx.log(level, message, fields)` (a remote worker sends
 * them with its report), stored with the task and shown with it. Everything about them is bounded,
 * because a handler runs once per task and a job may have many: see TASK_LOG_LIMITS.
 */

export const TASK_LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type TaskLogLevel = (typeof TASK_LOG_LEVELS)[number];

export const TASK_LOG_LIMITS = {
  /** Lines one attempt keeps: past it the oldest are dropped, and counted. */
  linesPerAttempt: 100,
  /** Bytes (message and fields, UTF-8) one attempt keeps: past it the oldest lines are dropped, and counted. */
  bytesPerAttempt: 64 * 1024,
  /** Lines one job keeps, over all its tasks and attempts: past it the oldest are deleted, and counted. */
  linesPerJob: 10_000,
  /** A line's message, in UTF-8 bytes: a longer one is cut, marked where. */
  messageBytes: 4096,
  /** A line's fields, as JSON in UTF-8 bytes: larger ones are not kept, and the line says so. */
  fieldsBytes: 4096,
} as const;

export const TaskLogLevel = z.enum(TASK_LOG_LEVELS);

/** One stored line, as GET jobs/{jobId}/tasks/{taskId}/logs returns it. */
export const TaskLogLine = z.object({
  /** The line's number within its task, across attempts: pass the last one back as `afterSeq`. */
  seq: z.number().int().min(1),
  attempt: z.number().int().min(0),
  level: TaskLogLevel,
  message: z.string(),
  fields: z.unknown().nullable(),
  loggedAt: z.date(),
});
export type TaskLogLine = z.infer<typeof TaskLogLine>;

/** A page of one task's lines, with what its attempts and its job dropped over their caps. */
export const TaskLogPage = z.object({
  jobId: z.string(),
  taskId: z.string(),
  lines: z.array(TaskLogLine),
  /** Lines recorded for the task, over every attempt (some may since have been deleted for the job's cap). */
  recorded: z.number().int().min(0),
  /** Lines the task's attempts dropped over the per-attempt cap (the oldest of each attempt). */
  dropped: z.number().int().min(0),
  /** Lines of the whole job deleted, oldest first, to keep it within its cap. */
  jobDropped: z.number().int().min(0),
  /** The `afterSeq` of the next page, or null when this page reached the last line. */
  nextAfterSeq: z.number().int().nullable(),
});
export type TaskLogPage = z.infer<typeof TaskLogPage>;

export const TaskLogsParams = z.object({ jobId: JobId, taskId: TaskId });

export const TaskLogsQuery = z.object({
  afterSeq: integerInput(0, INT4_MAX).default(0),
  limit: integerInput(1, PAGE_LIMITS.taskLogs).default(500),
});
export type TaskLogsQuery = z.infer<typeof TaskLogsQuery>;

const encoder = new TextEncoder();
const utf8Bytes = (text: string): number => encoder.encode(text).length;

/**
 * A line a remote worker reports with `complete` or `fail` (`logs`). Refused (400) rather than cut
 * when over a bound, as a failure report is, so the worker learns its report did not fit. The
 * attempt's byte cap is applied as to an in-process attempt (oldest lines dropped, and counted).
 */
export const RemoteTaskLogLine = z.object({
  level: TaskLogLevel,
  message: z.string().refine((message) => utf8Bytes(message) <= TASK_LOG_LIMITS.messageBytes, `at most ${TASK_LOG_LIMITS.messageBytes} bytes of UTF-8`),
  fields: z
    .record(z.string(), z.unknown())
    .refine((fields) => utf8Bytes(JSON.stringify(fields)) <= TASK_LOG_LIMITS.fieldsBytes, `at most ${TASK_LOG_LIMITS.fieldsBytes} bytes as JSON`)
    .refine((fields) => unstorableJsonIssues(fields).length === 0, 'holds what cannot be stored (NUL, a lone surrogate, or nested deeper than 64 levels)')
    .optional(),
  /** When the worker logged it (ISO 8601); default: when the report arrived. */
  at: z.iso.datetime({ offset: true }).optional(),
});
export type RemoteTaskLogLine = z.infer<typeof RemoteTaskLogLine>;

/** The optional log fields of a remote worker's `complete` and `fail` bodies. */
export const RemoteTaskLogs = {
  /** At most an attempt's cap of lines: a worker that logged more sends the newest and counts the rest in `logsDropped`. */
  logs: z.array(RemoteTaskLogLine).max(TASK_LOG_LIMITS.linesPerAttempt).optional(),
  /** Lines the worker itself dropped before reporting: added to the task's dropped count. */
  logsDropped: z.number().int().min(0).max(INT4_MAX).optional(),
};
