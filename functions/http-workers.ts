import { createHash, timingSafeEqual } from 'node:crypto';
import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { CoreMachineError } from '../core/errors';
import { TaskIdParams } from '../models/api';
import { getAppContext } from './app-context';
import { readJsonBody, withErrors, type Handler } from './http-errors';
import { parseParams } from './http-input';
import type { HttpRoute } from './http-route';

export class UnauthorizedError extends CoreMachineError {
  override readonly type = 'UnauthorizedError';
  override readonly nonRetryable = true;
}

/**
 * Remote workers authenticate with the function key (enforced by the host for authLevel
 * 'function'); when COREMACHINE_WORKER_TOKEN is set they must also present it as a bearer token,
 * so a key shared with operators is not enough to report task results.
 */
function checkWorkerToken(request: HttpRequest, expected: string | undefined): void {
  if (!expected) return;
  // The auth scheme is case-insensitive (RFC 7235 section 2.1), the token is not.
  const presented = /^bearer +(\S+) *$/i.exec(request.headers.get('authorization') ?? '')?.[1] ?? '';
  // Digests are of equal length whatever was sent, so neither the comparison's time nor an early
  // return tells a caller how long the token is.
  if (!timingSafeEqual(digest(presented), digest(expected)))
    throw new UnauthorizedError('a remote worker must send Authorization: Bearer <COREMACHINE_WORKER_TOKEN>');
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

function workerHandler(work: (request: HttpRequest) => Promise<HttpResponseInit>): Handler {
  return withErrors(async (request) => {
    checkWorkerToken(request, (await getAppContext()).config.workerToken);
    return work(request);
  });
}

/** The task id of the path, checked before any body is read or SQL runs. */
const taskId = (request: HttpRequest) => parseParams(request, TaskIdParams).taskId;

/**
 * POST workers/claim {workerId, taskTypes, maxTasks?, leaseSeconds?} → {tasks: [{taskId, claimId, parameters, ...}]};
 * 404 UnknownRemoteTaskTypeError (with remoteTaskTypes) when a type is unknown or not remote.
 */
export const claimHandler = workerHandler(async (request) => {
  const body = await readJsonBody(request);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: { tasks: await machine.remote.claim(body) } };
});

/** POST workers/tasks/{taskId}/heartbeat {claimId, leaseSeconds?} → {leaseExpiresAt}; 409 when the claim is lost. */
export const heartbeatHandler = workerHandler(async (request) => {
  const id = taskId(request);
  const body = await readJsonBody(request);
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: await machine.remote.heartbeat(id, body) };
});

/** POST workers/tasks/{taskId}/complete {claimId, result}; 409 when a newer claim owns the task. */
export const completeHandler = workerHandler(async (request) => {
  const id = taskId(request);
  const body = await readJsonBody(request);
  const { machine } = await getAppContext();
  await machine.remote.complete(id, body);
  return { status: 200, jsonBody: { taskId: id, status: 'COMPLETED' } };
});

/**
 * POST workers/tasks/{taskId}/fail {claimId, error:{type?, message}, retryable?, retryAfterMs?}.
 * retryAfterMs is capped by the task type's retry policy (see MAX_RETRY_DELAY_MS).
 */
export const failHandler = workerHandler(async (request) => {
  const id = taskId(request);
  const body = await readJsonBody(request);
  const { machine } = await getAppContext();
  const { retryAt } = await machine.remote.fail(id, body);
  return { status: 200, jsonBody: { taskId: id, status: retryAt ? 'QUEUED' : 'FAILED', retryAt } };
});

/**
 * POST workers/tasks/{taskId}/release: an operator gives up a stuck claim; the task is claimable
 * again. 404 for an unknown task, 409 when it holds no claim to release (as complete and heartbeat).
 */
export const releaseHandler = withErrors(async (request) => {
  const id = taskId(request);
  const { machine } = await getAppContext();
  await machine.remote.release(id);
  return { status: 200, jsonBody: { taskId: id, status: 'QUEUED' } };
});

/**
 * GET workers: remote workers and in-process hosts with their task types, last claim and
 * heartbeat (and its age, `stale` past WORKER_STALE_AFTER_SECONDS) and the tasks each holds now.
 * An operator's read (function key), not a worker's: no worker token is asked for.
 */
export const listWorkersHandler = withErrors(async () => {
  const { machine } = await getAppContext();
  return { status: 200, jsonBody: { workers: await machine.listWorkers() } };
});

export const workerRoutes: HttpRoute[] = [
  { name: 'workers-list', methods: ['GET'], authLevel: 'function', route: 'workers', handler: listWorkersHandler },
  { name: 'workers-claim', methods: ['POST'], authLevel: 'function', route: 'workers/claim', handler: claimHandler },
  { name: 'workers-heartbeat', methods: ['POST'], authLevel: 'function', route: 'workers/tasks/{taskId}/heartbeat', handler: heartbeatHandler },
  { name: 'workers-complete', methods: ['POST'], authLevel: 'function', route: 'workers/tasks/{taskId}/complete', handler: completeHandler },
  { name: 'workers-fail', methods: ['POST'], authLevel: 'function', route: 'workers/tasks/{taskId}/fail', handler: failHandler },
  { name: 'workers-release', methods: ['POST'], authLevel: 'function', route: 'workers/tasks/{taskId}/release', handler: releaseHandler },
];
