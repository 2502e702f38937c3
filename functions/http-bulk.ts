import { BulkParams } from '../models/bulk-jobs';
import { getAppContext } from './app-context';
import { readJsonBody, withErrors, type Handler } from './http-errors';
import { parseParams } from './http-input';
import type { HttpRoute } from './http-route';

/**
 * POST bulk/jobs/{cancel|retry|delete}, body `{filter: {jobType?, status?, label?, createdAfter?,
 * createdBefore?}, dryRun?, limit?, cursor?}`: the action on every job the filter matches, each in
 * its own transaction. 200 + `{counts, changed, refused, nextCursor}`: a job that cannot take the
 * action is listed in `refused` with the reason, not an error · 400 with the zod issues (an empty
 * filter included). Not under jobs/: `jobs/{jobId}/{action}` would match `jobs/bulk/cancel`.
 */
export const bulkJobsHandler: Handler = withErrors(async (request) => {
  const { action } = parseParams(request, BulkParams);
  const body = await readJsonBody(request);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.bulkJobs(action, body) };
});

export const bulkRoutes: HttpRoute[] = [{ name: 'jobs-bulk', methods: ['POST'], authLevel: 'function', route: 'bulk/jobs/{action}', handler: bulkJobsHandler }];
