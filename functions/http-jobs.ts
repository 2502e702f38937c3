import type { HttpRequest } from '@azure/functions';
import type { HttpRoute } from './http-route';
import { getAppContext } from './app-context';
import { readJsonBody, withErrors, type Handler } from './http-errors';


/** Only the named query keys, and only when present: absent must mean "default", not "". */
function pickQuery(request: HttpRequest, keys: readonly string[]): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const key of keys) {
    const value = request.query.get(key);
    if (value !== null && value !== '') picked[key] = value;
  }
  return picked;
}

function routeParam(request: HttpRequest, name: string): string {
  return request.params[name] ?? '';
}

/** POST jobs/{jobType}: 202 with the new job, 200 with the existing one (same type + parameters + Idempotency-Key). */
export const submitJobHandler: Handler = withErrors(async (request) => {
  const jobType = routeParam(request, 'jobType');
  const parameters = await readJsonBody(request);
  const { machine } = await getAppContext();
  const { job, created } = await machine.submitJob(jobType, parameters, { idempotencyKey: request.headers.get('idempotency-key') });
  return {
    status: created ? 202 : 200,
    jsonBody: job,
    headers: { location: `/api/jobs/${job.jobId}` },
  };
});

/** GET jobs/{jobId}?waitSeconds=N: the job with per-stage progress and its result or error; N > 0 long-polls until it ends. */
export const getJobHandler: Handler = withErrors(async (request) => {
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.waitForJob(routeParam(request, 'jobId'), pickQuery(request, ['waitSeconds'])) };
});

/** GET jobs?status=&jobType=&limit=&cursor=: newest first; pass nextCursor back for the next page. */
export const listJobsHandler: Handler = withErrors(async (request) => {
  const { machine } = await getAppContext();
  const page = await machine.listJobs(pickQuery(request, ['status', 'jobType', 'limit', 'cursor']));
  return { status: 200, jsonBody: page };
});

/** GET jobs/{jobId}/tasks?stage=&status=: tasks with attempts, errors and timings. */
export const listTasksHandler: Handler = withErrors(async (request) => {
  const { machine } = await getAppContext();
  const query = pickQuery(request, ['stage', 'status', 'limit', 'afterIndex']);
  const tasks = await machine.listTasks(routeParam(request, 'jobId'), query);
  return { status: 200, jsonBody: { tasks } };
});

// GET jobs/{jobId} and POST jobs/{jobType} share a template; the host routes them by method.
export const jobRoutes: HttpRoute[] = [
  { name: 'jobs-submit', methods: ['POST'], authLevel: 'function', route: 'jobs/{jobType}', handler: submitJobHandler },
  { name: 'jobs-get', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}', handler: getJobHandler },
  { name: 'jobs-list', methods: ['GET'], authLevel: 'function', route: 'jobs', handler: listJobsHandler },
  { name: 'jobs-tasks', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/tasks', handler: listTasksHandler },
];
