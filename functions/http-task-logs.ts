import { TaskLogsParams, TaskLogsQuery } from '../models/task-log';
import { getAppContext } from './app-context';
import { withErrors, type Handler } from './http-errors';
import { parseParams, queryFor } from './http-input';
import type { HttpRoute } from './http-route';

/**
 * GET jobs/{jobId}/tasks/{taskId}/logs?afterSeq=&limit=: the lines the task's handler logged
 * (ctx.log), in the order written, with what its attempts and its job dropped over their caps.
 * 404 when the job has no such task; a task that never logged has no lines.
 */
export const taskLogsHandler: Handler = withErrors(async (request) => {
  const { jobId, taskId } = parseParams(request, TaskLogsParams);
  const query = queryFor(request, TaskLogsQuery);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.listTaskLogs(jobId, taskId, query) };
});

export const taskLogRoutes: HttpRoute[] = [
  { name: 'jobs-task-logs', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/tasks/{taskId}/logs', handler: taskLogsHandler },
];
