import type { HttpRoute } from './http-route';
import type { CoreMachine } from '../core/engine/core-machine';
import type { JobView } from '../models';
import { CONTROL_ACTION_NAMES, type ControlAction } from '../models/control-actions';
import { ControlParams, JobIdParams, ListDeadLettersQuery, ListEventsQuery } from '../models/api';
import { getAppContext } from './app-context';
import { withErrors, type Handler } from './http-errors';
import { parseParams, queryFor } from './http-input';

/**
 * One engine call per action in models/control-actions.ts: typed as a Record over ControlAction,
 * so an action added there without a handler here fails the type check.
 */
const ACTIONS: Readonly<Record<ControlAction, (machine: CoreMachine, jobId: string) => Promise<JobView>>> = {
  cancel: (machine, jobId) => machine.cancelJob(jobId),
  pause: (machine, jobId) => machine.pauseJob(jobId),
  resume: (machine, jobId) => machine.resumeJob(jobId),
  retry: (machine, jobId) => machine.retryJob(jobId),
};

/** POST jobs/{jobId}/{action}: 200 + job; 409 when the job's status does not allow it. */
export const controlJobHandler: Handler = withErrors(async (request) => {
  const { jobId, action } = parseParams(request, ControlParams);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await ACTIONS[action](machine, jobId) };
});

/**
 * GET jobs/{jobId}/events?afterId=&beforeId=&order=asc|desc&limit=: every transition of the job,
 * its stages and tasks. order=desc reads from the newest end (the dashboard); zod validates it all.
 */
export const listEventsHandler: Handler = withErrors(async (request) => {
  const { jobId } = parseParams(request, JobIdParams);
  const query = queryFor(request, ListEventsQuery);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: { events: await machine.listEvents(jobId, query) } };
});

/** GET dead-letters?jobId=&beforeId=&limit=: messages no consumer could use, newest first. */
export const listDeadLettersHandler: Handler = withErrors(async (request) => {
  const query = queryFor(request, ListDeadLettersQuery);
  const { machine } = await getAppContext();
  const deadLetters = await machine.listDeadLetters(query);
  return { status: 200, jsonBody: { deadLetters } };
});

export const controlRoutes: HttpRoute[] = [
  {
    name: 'jobs-control',
    methods: ['POST'],
    authLevel: 'function',
    route: `jobs/{jobId}/{action:regex(^(${CONTROL_ACTION_NAMES.join('|')})$)}`,
    handler: controlJobHandler,
  },
  { name: 'jobs-events', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/events', handler: listEventsHandler },
  { name: 'dead-letters', methods: ['GET'], authLevel: 'function', route: 'dead-letters', handler: listDeadLettersHandler },
];
