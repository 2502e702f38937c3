import type { HttpRoute } from './http-route';
import { getAppContext } from './app-context';
import { withErrors, type Handler } from './http-errors';

/**
 * GET job-types: every registered job type with the JSON Schema of its parameters and of its
 * signals' payloads, its stages, and the JSON Schemas of the submissions queue's messages and
 * receipt, so a producer in any language can build what it sends; and the versions unfinished
 * jobs run, registered or not.
 */
export const listJobTypesHandler: Handler = withErrors(async () => {
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.jobTypes() };
});

export const jobTypeRoutes: HttpRoute[] = [{ name: 'job-types', methods: ['GET'], authLevel: 'function', route: 'job-types', handler: listJobTypesHandler }];
