import type { HttpResponseInit } from '@azure/functions';
import { z } from 'zod';
import { JobId, TaskId } from '../models/http-input';
import type { StoredValue } from '../core/engine/stored-values';
import { getAppContext } from './app-context';
import { withErrors, type Handler } from './http-errors';
import { parseParams } from './http-input';
import type { HttpRoute } from './http-route';

/**
 * The values job and task views link to instead of carrying them (`resultRef`, `parametersRef`:
 * docs/payloads.md): one value per request, as `application/json`. A value kept inline is sent as
 * it is; one in the payload store is streamed from it, with its length, and its SHA-256 as ETag
 * and `x-coremachine-sha256`. Its bytes are checked as they pass: a blob that does not match its
 * reference ends the response early, so a client never takes it for the whole value.
 */
function respond(value: StoredValue): HttpResponseInit {
  if (value.kind === 'inline') return { status: 200, body: JSON.stringify(value.value), headers: { 'content-type': 'application/json' } };
  return {
    status: 200,
    body: value.stream,
    headers: {
      'content-type': 'application/json',
      'content-length': String(value.size),
      etag: `"${value.sha256}"`,
      'x-coremachine-sha256': value.sha256,
    },
  };
}

const TaskValuePath = z.object({ jobId: JobId, taskId: TaskId });

/** GET jobs/{jobId}/result: the job's finalize result (null until it completed). */
export const jobResultHandler: Handler = withErrors(async (request) => {
  const { jobId } = parseParams(request, z.object({ jobId: JobId }));
  const { machine } = await getAppContext();
  return respond(await machine.values.open({ jobId, field: 'result' }));
});

/** GET jobs/{jobId}/tasks/{taskId}/result: a task's result (null until it completed). */
export const taskResultHandler: Handler = withErrors(async (request) => {
  const { jobId, taskId } = parseParams(request, TaskValuePath);
  const { machine } = await getAppContext();
  return respond(await machine.values.open({ jobId, taskId, field: 'result' }));
});

/** GET jobs/{jobId}/tasks/{taskId}/parameters: the parameters the fan-out gave the task. */
export const taskParametersHandler: Handler = withErrors(async (request) => {
  const { jobId, taskId } = parseParams(request, TaskValuePath);
  const { machine } = await getAppContext();
  return respond(await machine.values.open({ jobId, taskId, field: 'parameters' }));
});

export const payloadRoutes: HttpRoute[] = [
  { name: 'jobs-result', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/result', handler: jobResultHandler },
  { name: 'jobs-task-result', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/tasks/{taskId}/result', handler: taskResultHandler },
  { name: 'jobs-task-parameters', methods: ['GET'], authLevel: 'function', route: 'jobs/{jobId}/tasks/{taskId}/parameters', handler: taskParametersHandler },
];
