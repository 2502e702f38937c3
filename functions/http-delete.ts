import { z } from 'zod';
import { describeZodError, ValidationError } from '../core/errors';
import { getAppContext } from './app-context';
import { withErrors, type Handler } from './http-errors';
import type { HttpRoute } from './http-route';

// Job ids are SHA-256 hex (core/identity.ts): anything else cannot name a job, and says so with a 400.
const DeletePath = z.object({ jobId: z.string().regex(/^[0-9a-f]{64}$/, 'a job id is 64 lowercase hexadecimal characters') });

/**
 * DELETE jobs/{jobId}: a finished job (COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED) and
 * every row it left (stages, tasks, events, dead letters, outbox, task log lines): 200 with the counts. 409 while
 * it may still change (cancel it first), 404 when there is no such job.
 */
export const deleteJobHandler: Handler = withErrors(async (request) => {
  const parsed = DeletePath.safeParse({ jobId: request.params.jobId });
  if (!parsed.success) throw new ValidationError(`invalid job id: ${describeZodError(parsed.error)}`, parsed.error.issues);
  const { machine } = await getAppContext();
  const deleted = await machine.deleteJob(parsed.data.jobId);
  return { status: 200, jsonBody: { jobId: parsed.data.jobId, deleted } };
});

export const deleteRoutes: HttpRoute[] = [
  { name: 'jobs-delete', methods: ['DELETE'], authLevel: 'function', route: 'jobs/{jobId}', handler: deleteJobHandler },
];
