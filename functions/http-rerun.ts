import { RerunBody, RerunParams } from '../models/rerun';
import { parseOrThrow } from '../core/errors';
import { getAppContext } from './app-context';
import { readJsonBody, withErrors, type Handler } from './http-errors';
import { parseParams } from './http-input';
import type { HttpRoute } from './http-route';

/**
 * POST jobs/{jobId}/stages/{stage}/rerun, body `{taskIds?, status?, resultField?: {path, equals},
 * dryRun?}`: chosen tasks of a finished stage run again and the stages after it and finalize are
 * recomputed (docs/operating.md, "Re-runs and bulk operations"). 200 + what changed (or would) ·
 * 400 with the zod issues (and for ids that are not tasks of the stage) · 404 unknown job · 409 a
 * job that has not ended, or a stage that cannot be re-run as asked.
 */
export const rerunTasksHandler: Handler = withErrors(async (request) => {
  const { jobId, stage } = parseParams(request, RerunParams);
  const body = parseOrThrow(RerunBody, await readJsonBody(request), 're-run body');
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.rerunTasks(jobId, { ...body, stage }) };
});

export const rerunRoutes: HttpRoute[] = [
  { name: 'jobs-stage-rerun', methods: ['POST'], authLevel: 'function', route: 'jobs/{jobId}/stages/{stage}/rerun', handler: rerunTasksHandler },
];
