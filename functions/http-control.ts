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

/** GET jobs/{jobId}/events?afterId=&limit=: every transition of the job, its stages and tasks. */
export const listEventsHandler: Handler = withErrors(async (request) => {
  const { machine } = await getAppContext();
  const afterId = Number(request.query.get('afterId') ?? 0);
  const limit = Number(request.query.get('limit') ?? 1000);
  if (!Number.isInteger(afterId) || !Number.isInteger(limit) || limit < 1) {
    throw new ValidationError('afterId and limit must be integers (limit >= 1)', [{ path: ['afterId'], message: 'integer expected' }]);
  }
  return { status: 200, jsonBody: { events: await machine.listEvents(request.params.jobId ?? '', { afterId, limit }) } };
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
