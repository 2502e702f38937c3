import type { HttpRequest } from '@azure/functions';
import type { HttpRoute } from './http-route';
import { JobIdParams, JobTypeParams, ListJobsQuery, ListTasksQuery } from '../models/api';
import { JobWaitQuery } from '../models/idempotency';
import { TIMEOUT_HEADER } from '../models/deadline';
import { JOB_VERSION_HEADER } from '../models/messages';
import { CREATED_BY_HEADER, JOB_NAME_HEADER, JobIdentityHeaders, LABELS_HEADER, type JobIdentity } from '../models/job-labels';
import { FAIRNESS_KEY_HEADER, FAIRNESS_WEIGHT_HEADER, JobSchedulingHeaders, PRIORITY_HEADER, type JobScheduling } from '../models/job-priority';
import { parseOrThrow } from '../core/errors';
import { getAppContext } from './app-context';
import { clientSignal } from './client-signal';
import { readJsonBody, withErrors, type Handler } from './http-errors';
import { parseParams, queryFor } from './http-input';

// Each handler validates its path and query with zod before it asks for the engine, so bad input
// is a 400 without a database round trip.

/**
 * POST jobs/{jobType}: 202 with the new job, 200 with the existing one (same type + parameters +
 * Idempotency-Key). CoreMachine-Timeout-Seconds overrides the job's timeout within its bounds;
 * CoreMachine-Job-Name, -Created-By and -Labels say who and what, CoreMachine-Priority and
 * -Fairness-Key/-Weight where its tasks stand at claim (all ignored for an existing job).
 */
export const submitJobHandler: Handler = withErrors(async (request) => {
  const { jobType } = parseParams(request, JobTypeParams);
  const identity = identityFromHeaders(request);
  const scheduling = schedulingFromHeaders(request);
  const parameters = await readJsonBody(request);
  const { machine } = await getAppContext();
  const { job, created } = await machine.submitJob(jobType, parameters, {
    idempotencyKey: request.headers.get('idempotency-key'),
    // Validated by the engine with the parameters (models/deadline.ts): absent means the job type's own.
    timeoutSeconds: request.headers.get(TIMEOUT_HEADER),
    // Absent: the newest version of the job type this deployment registers.
    version: request.headers.get(JOB_VERSION_HEADER),
    ...identity,
    ...scheduling,
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

/**
 * CoreMachine-Job-Name, CoreMachine-Created-By and CoreMachine-Labels (percent-decoded), refused
 * with the header's name when malformed; the engine checks the decoded values again, as for code.
 */
function identityFromHeaders(request: HttpRequest): JobIdentity {
  const present: Record<string, string> = {};
  for (const header of [JOB_NAME_HEADER, CREATED_BY_HEADER, LABELS_HEADER]) {
    const value = request.headers.get(header);
    if (value !== null) present[header] = value;
  }
  return parseOrThrow(JobIdentityHeaders, present, 'job name, createdBy or labels header');
}

/** CoreMachine-Priority, CoreMachine-Fairness-Key (percent-decoded) and CoreMachine-Fairness-Weight, refused with the header's name when malformed. */
function schedulingFromHeaders(request: HttpRequest): JobScheduling {
  const present: Record<string, string> = {};
  for (const header of [PRIORITY_HEADER, FAIRNESS_KEY_HEADER, FAIRNESS_WEIGHT_HEADER]) {
    const value = request.headers.get(header);
    if (value !== null) present[header] = value;
  }
  return parseOrThrow(JobSchedulingHeaders, present, 'priority or fairness header');
}

/**
 * GET jobs?status=&jobType=&label=k:v&createdBy=&name=&limit=&cursor=: newest first; pass
 * nextCursor back for the next page. `label` may repeat (every pair must match); `name` is a prefix.
 */
export const listJobsHandler: Handler = withErrors(async (request) => {
  // From the URL itself: a host may hand over the query as a map that keeps one value per name.
  const labels = new URL(request.url).searchParams.getAll('label').filter((value) => value !== '');
  const query = { ...queryFor(request, ListJobsQuery), ...(labels.length > 0 ? { label: labels } : {}) };
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
