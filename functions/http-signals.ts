import { SignalParams } from '../models/api';
import { getAppContext } from './app-context';
import { readJsonBody, withErrors, type Handler } from './http-errors';
import { parseParams } from './http-input';
import type { HttpRoute } from './http-route';

/**
 * POST jobs/{jobId}/signals/{name}, body = the signal's payload. 200 + job when delivered, and 200
 * again (changing nothing) for a repeat with the same payload; 400 with the zod issues when the
 * payload fails the waiting stage's schema; 404 for an unknown job; 409 when the job is not waiting
 * for that signal (or a different payload was delivered before).
 */
export const signalJobHandler: Handler = withErrors(async (request) => {
  const { jobId, name } = parseParams(request, SignalParams);
  const payload = await readJsonBody(request);
  const { machine } = await getAppContext();
  const { job, delivered } = await machine.deliverSignal(jobId, name, payload);
  return { status: 200, jsonBody: job, headers: { 'x-coremachine-signal': delivered ? 'delivered' : 'repeated' } };
});

export const signalRoutes: HttpRoute[] = [
  { name: 'jobs-signal', methods: ['POST'], authLevel: 'function', route: 'jobs/{jobId}/signals/{name}', handler: signalJobHandler },
];
