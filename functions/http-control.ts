import type { HttpRoute } from './http-route';
import { ValidationError } from '../core/errors';
import type { CoreMachine } from '../core/engine/core-machine';
import type { JobView } from '../models';
import { getAppContext } from './app-context';
import { withErrors, type Handler } from './http-errors';

const ACTIONS: Record<string, (machine: CoreMachine, jobId: string) => Promise<JobView>> = {
  cancel: (machine, jobId) => machine.cancelJob(jobId),
  pause: (machine, jobId) => machine.pauseJob(jobId),
  resume: (machine, jobId) => machine.resumeJob(jobId),
  retry: (machine, jobId) => machine.retryJob(jobId),
};

/** POST jobs/{jobId}/{action}: 200 + job; 409 when the job's status does not allow it. */
export const controlJobHandler: Handler = withErrors(async (request) => {
  const action = ACTIONS[request.params.action ?? ''];
  if (!action) throw new ValidationError(`unknown action "${request.params.action}": use cancel, pause, resume or retry`, [{ path: ['action'], message: 'unknown action' }]);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await action(machine, request.params.jobId ?? '') };
});

/**
 * GET jobs/{jobId}/events?afterId=&beforeId=&order=asc|desc&limit=: every transition of the job,
 * its stages and tasks. order=desc reads from the newest end (the dashboard); zod validates it all.
 */
export const listEventsHandler: Handler = withErrors(async (request) => {
  const { machine } = await getAppContext();
  const query: Record<string, string> = {};
  for (const key of ['afterId', 'beforeId', 'order', 'limit']) {
    const value = request.query.get(key);
    if (value !== null && value !== '') query[key] = value;
  }
  return { status: 200, jsonBody: { events: await machine.listEvents(request.params.jobId ?? '', query) } };
});

/** GET dead-letters?jobId=&beforeId=&limit=: messages no consumer could use, newest first. */
export const listDeadLettersHandler: Handler = withErrors(async (request) => {
  const { machine } = await getAppContext();
  const jobId = request.query.get('jobId') ?? undefined;
  const beforeId = request.query.get('beforeId');
  const limit = Number(request.query.get('limit') ?? 100);
  const deadLetters = await machine.listDeadLetters({ ...(jobId ? { jobId } : {}), ...(beforeId ? { beforeId: Number(beforeId) } : {}), limit });
  return { status: 200, jsonBody: { deadLetters } };
});

export const controlRoutes: HttpRoute[] = [
  { name: 'jobs-control', methods: ['POST'], authLevel: 'function', route: 'jobs/{jobId}/{action:regex(^(cancel|pause|resume|retry)$)}', handler: controlJobHandler },
  { name: 'jobs-events', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/events', handler: listEventsHandler },
  { name: 'dead-letters', methods: ['GET'], authLevel: 'function', route: 'dead-letters', handler: listDeadLettersHandler },
];
