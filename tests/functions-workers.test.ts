import { HttpRequest, HttpResponse, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { loadConfig } from '../core/config';
import { setAppContext } from '../functions/app-context';
import { claimHandler, completeHandler, heartbeatHandler, releaseHandler } from '../functions/http-workers';
import { janitorHandler } from '../functions/timer-janitor';
import { captureLogger, startHarness, stuckJobs, waitForJob, type Harness } from './support/harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let db: TestDatabase;
let h: Harness;
const lines: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});
beforeEach(async () => {
  h = await startHarness(db.pool);
  setAppContext({ machine: h.machine, pool: db.pool, transport: h.transport, logger: captureLogger(h.logs) });
});
afterEach(async () => {
  setAppContext(undefined);
  await h.worker?.drain();
  await h.stop();
  expect(await stuckJobs(db.pool)).toEqual([]);
});

type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;
async function post(handler: Handler, path: string, body: unknown, params: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const request = new HttpRequest({ method: 'POST', url: `http://localhost/api/${path}`, body: { string: JSON.stringify(body) }, params, headers });
  const response = new HttpResponse(await handler(request, new InvocationContext({ logHandler: (_l, ...a) => lines.push(a.map(String).join(' ')) })));
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

test('remote workers over HTTP: bearer token when configured, claim, heartbeat, complete, 409 for a lost claim, 400 for bad bodies', async () => {
  // The token is configuration: the context is built with it, as createAppContext does from the app settings.
  setAppContext({
    machine: h.machine,
    pool: db.pool,
    transport: h.transport,
    logger: captureLogger(h.logs),
    config: loadConfig({ COREMACHINE_WORKER_TOKEN: 's3cret-token' }),
  });
  const auth = { authorization: 'Bearer s3cret-token' };
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 2 });
  expect((await post(claimHandler, 'workers/claim', { workerId: 'w', taskTypes: ['test.render'] })).status).toBe(401);
  expect((await post(claimHandler, 'workers/claim', { workerId: 'w' }, {}, auth)).status).toBe(400);

  let tasks: Array<{ taskId: string; claimId: string; taskIndex: number }> = [];
  // By time, not tries: on a loaded machine the remote stage can take a while to be created.
  for (const deadline = Date.now() + 30_000; tasks.length < 2 && Date.now() < deadline;) {
    const claimed = await post(claimHandler, 'workers/claim', { workerId: 'w', taskTypes: ['test.render'], maxTasks: 5 }, {}, auth);
    expect(claimed.status).toBe(200);
    tasks = [...tasks, ...(claimed.body.tasks as typeof tasks)];
    if (tasks.length < 2) await new Promise((r) => setTimeout(r, 10));
  }
  const [a, b] = tasks;
  expect((await post(heartbeatHandler, '', { claimId: a!.claimId }, { taskId: a!.taskId }, auth)).status).toBe(200);
  expect((await post(releaseHandler, '', {}, { taskId: b!.taskId })).status).toBe(200);
  const lost = await post(completeHandler, '', { claimId: b!.claimId, result: { frame: 1, bytes: 1 } }, { taskId: b!.taskId }, auth);
  expect(lost).toMatchObject({ status: 409, body: { error: { type: 'LeaseLostError' } } });
  expect((await post(completeHandler, '', { claimId: a!.claimId, result: { frame: 'x' } }, { taskId: a!.taskId }, auth)).status).toBe(400);
  expect((await post(completeHandler, '', { claimId: a!.claimId, result: { frame: 0, bytes: 5 } }, { taskId: a!.taskId }, auth)).status).toBe(200);
  const [again] = (await post(claimHandler, 'workers/claim', { workerId: 'w2', taskTypes: ['test.render'] }, {}, auth)).body.tasks as typeof tasks;
  expect(again?.taskId).toBe(b!.taskId);
  expect((await post(completeHandler, '', { claimId: again!.claimId, result: { frame: 1, bytes: 6 } }, { taskId: b!.taskId }, auth)).status).toBe(200);
  expect(await waitForJob(h.machine, job.jobId)).toMatchObject({ status: 'COMPLETED', result: { totalBytes: 11 } });
});

test('the janitor timer trigger sweeps and logs what it found', async () => {
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 1 });
  let task: { taskId: string } | undefined;
  for (const deadline = Date.now() + 30_000; !task && Date.now() < deadline;) {
    [task] = await h.machine.remote.claim({ workerId: 'dies', taskTypes: ['test.render'] });
    if (!task) await new Promise((r) => setTimeout(r, 10));
  }
  await db.pool.query("UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = $1", [task!.taskId]);
  lines.length = 0;
  await janitorHandler(
    { isPastDue: false, schedule: { adjustForDST: false }, scheduleStatus: { last: '', next: '', lastUpdated: '' } },
    new InvocationContext({ logHandler: (_l, ...a) => lines.push(a.map(String).join(' ')) }),
  );
  expect(lines.some((line) => line.includes('coremachine.janitor.sweep') && line.includes('"requeuedTasks":1'))).toBe(true);
  await h.machine.cancelJob(job.jobId);
});

test('the worker token: the scheme is case-insensitive (RFC 7235), and a token of any length is compared in full, never refused early on its length', async () => {
  setAppContext({
    machine: h.machine,
    pool: db.pool,
    transport: h.transport,
    logger: captureLogger(h.logs),
    config: loadConfig({ COREMACHINE_WORKER_TOKEN: 's3cret-token' }),
  });
  const claim = (authorization: string) => post(claimHandler, 'workers/claim', { workerId: 'w', taskTypes: ['test.render'] }, {}, { authorization });
  expect((await claim('bearer s3cret-token')).status).toBe(200);
  expect((await claim('BEARER s3cret-token')).status).toBe(200);
  expect((await claim('Bearer S3CRET-TOKEN')).status).toBe(401);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the same module object the handler calls through
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const compare = jest.spyOn(crypto, 'timingSafeEqual');
  try {
    for (const token of ['x', 's3cret-toke', 's3cret-token-and-more', '']) {
      compare.mockClear();
      expect((await claim(`Bearer ${token}`)).status).toBe(401);
      expect(compare).toHaveBeenCalledTimes(1);
      const [a, b] = compare.mock.calls[0] as [Buffer, Buffer];
      expect([a.length, b.length]).toEqual([32, 32]);
    }
  } finally {
    compare.mockRestore();
  }
});
