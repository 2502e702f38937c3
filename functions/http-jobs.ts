import type { HttpRoute } from './http-route';
import { JobIdParams, JobTypeParams, ListJobsQuery, ListTasksQuery } from '../models/api';
import { JobWaitQuery } from '../models/idempotency';
import { TIMEOUT_HEADER } from '../models/deadline';
import { getAppContext } from './app-context';
import { clientSignal } from './client-signal';
import { readJsonBody, withErrors, type Handler } from './http-errors';
import { parseParams, queryFor } from './http-input';

// Each handler validates its path and query with zod before it asks for the engine, so bad input
// is a 400 without a database round trip.

/**
 * POST jobs/{jobType}: 202 with the new job, 200 with the existing one (same type + parameters +
 * Idempotency-Key). CoreMachine-Timeout-Seconds overrides the job's timeout within its bounds.
 */
export const submitJobHandler: Handler = withErrors(async (request) => {
  const { jobType } = parseParams(request, JobTypeParams);
  const parameters = await readJsonBody(request);
  const { machine } = await getAppContext();
  const { job, created } = await machine.submitJob(jobType, parameters, {
    idempotencyKey: request.headers.get('idempotency-key'),
    // Validated by the engine with the parameters (models/deadline.ts): absent means the job type's own.
    timeoutSeconds: request.headers.get(TIMEOUT_HEADER),
  });
  return {
    status: created ? 202 : 200,
    jsonBody: job,
    headers: { location: `/api/jobs/${job.jobId}` },
  };
});

/** GET jobs/{jobId}?waitSeconds=N: the job with per-stage progress and its result or error; N > 0 long-polls until it ends. */
export const getJobHandler: Handler = withErrors(async (request) => {
  const { jobId } = parseParams(request, JobIdParams);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.waitForJob(jobId, queryFor(request, JobWaitQuery), clientSignal(request)) };
});

/** GET jobs?status=&jobType=&limit=&cursor=: newest first; pass nextCursor back for the next page. */
export const listJobsHandler: Handler = withErrors(async (request) => {
  const query = queryFor(request, ListJobsQuery);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.listJobs(query) };
});

/** GET jobs/{jobId}/tasks?stage=&status=&limit=&afterIndex=: tasks with attempts, errors and timings. */
export const listTasksHandler: Handler = withErrors(async (request) => {
  const { jobId } = parseParams(request, JobIdParams);
  const query = queryFor(request, ListTasksQuery);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: { tasks: await machine.listTasks(jobId, query) } };
});

// GET jobs/{jobId} and POST jobs/{jobType} share a template; the host routes them by method.
export const jobRoutes: HttpRoute[] = [
  { name: 'jobs-submit', methods: ['POST'], authLevel: 'function', route: 'jobs/{jobType}', handler: submitJobHandler },
  { name: 'jobs-get', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}', handler: getJobHandler },
  { name: 'jobs-list', methods: ['GET'], authLevel: 'function', route: 'jobs', handler: listJobsHandler },
  { name: 'jobs-tasks', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/tasks', handler: listTasksHandler },
];
