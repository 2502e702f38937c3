import net from 'node:net';
import { ServiceBusError } from '@azure/service-bus';
import { z } from 'zod';
import { createPool } from '../core/db/pool';
import { CoreMachine } from '../core/engine/core-machine';
import { MAX_RETRY_DELAY_MS } from '../core/engine/retry-policy';
import { createLogger } from '../core/logger';
import { InProcessTransport } from '../core/transport/in-process-transport';
import type { Transport } from '../core/transport/transport';
import { setAppContext, setTransportFactory } from '../functions/app-context';
import { controlJobHandler, listDeadLettersHandler, listEventsHandler } from '../functions/http-control';
import { healthHandler } from '../functions/http-health';
import { getJobHandler, listJobsHandler, listTasksHandler, submitJobHandler } from '../functions/http-jobs';
import { claimHandler, completeHandler, failHandler, heartbeatHandler, releaseHandler } from '../functions/http-workers';
// The app's entry point registers CoreMachine (registerCoreMachine): a context built from the environment needs it.
import '../functions/index';
import { appRegistry } from './support/registry';
import { defineJob, defineRemoteTask, ListJobsQuery } from '../models';
import { stuckJobs } from './support/harness';
import { call, ErrorReply, invocationLogs, rowCounts, type Handler, type Reply } from './support/http-invoke';
import { createTestDatabase, type TestDatabase } from './support/test-database';

// Two remote task types: one whose retry policy caps delays at a minute, one that leaves it to the
// global maximum. Single-stage jobs, so a test reaches claimable tasks with one job message.
const render = defineRemoteTask({
  type: 'boundary.render',
  parameters: z.object({ frame: z.number().int() }),
  result: z.object({ ok: z.boolean() }),
  retry: { maxAttempts: 5 },
});
const capped = defineRemoteTask({
  type: 'boundary.capped',
  parameters: z.object({ frame: z.number().int() }),
  result: z.object({ ok: z.boolean() }),
  retry: { maxAttempts: 5, maxDelayMs: 60_000 },
});
const frames = z.object({ frames: z.number().int().min(1).max(10) });
const renderJob = defineJob({ type: 'boundary.render_job', parameters: frames })
  .stage({ name: 'render', task: render, fanOut: ({ parameters }) => Array.from({ length: parameters.frames }, (_, frame) => ({ frame })) })
  .finalize(() => ({}));
const cappedJob = defineJob({ type: 'boundary.capped_job', parameters: frames })
  .stage({ name: 'render', task: capped, fanOut: ({ parameters }) => Array.from({ length: parameters.frames }, (_, frame) => ({ frame })) })
  .finalize(() => ({}));

let db: TestDatabase;
let machine: CoreMachine;
let transport: InProcessTransport;
const appLogs: string[] = [];
const useApp = (pool = db.pool, m = machine) => setAppContext({ machine: m, pool, transport, logger: createLogger('debug', {}, (line) => appLogs.push(line)) });

beforeAll(async () => {
  db = await createTestDatabase();
  transport = new InProcessTransport();
  machine = await CoreMachine.create({ pool: db.pool, registry: appRegistry(renderJob, cappedJob), transport, logger: createLogger('silent') });
});
afterAll(async () => {
  setAppContext(undefined);
  await transport.close();
  await db.drop();
});
beforeEach(() => {
  invocationLogs.length = 0;
  useApp();
});
afterEach(async () => {
  setTransportFactory(undefined);
  useApp();
  // Whatever a test threw at the app, it still answers healthy and left no job running.
  expect((await call(healthHandler, 'GET', 'health')).status).toBe(200);
  expect(await stuckJobs(db.pool)).toEqual([]);
});

/** A 4xx with exactly the `{error:{type, message, issues?}}` shape; returns the error. */
function expectRefused(reply: Reply, status: number, type: string): z.infer<typeof ErrorReply>['error'] {
  expect({ status: reply.status, type: (reply.body as { error?: { type?: string } }).error?.type }).toEqual({ status, type });
  const parsed = ErrorReply.safeParse(reply.body);
  expect(parsed.error?.issues ?? []).toEqual([]);
  return (parsed.data as z.infer<typeof ErrorReply>).error;
}

const JOB = 'a'.repeat(64);
const TASK = `${JOB}-s1-t0`;
const CLAIM = '00000000-0000-4000-8000-000000000000';

/** Submits a remote job and starts its stage, so its tasks can be claimed over HTTP. */
async function remoteTasks(jobType: string, count: number): Promise<{ jobId: string; tasks: Array<{ taskId: string; claimId: string }> }> {
  const { job } = await machine.submitJob(jobType, { frames: count });
  for (const message of transport.jobs.receive(10)) {
    await machine.processJobMessage(message.body);
    transport.jobs.complete(message);
  }
  const claimed = await call(claimHandler, 'POST', 'workers/claim', {
    body: JSON.stringify({ workerId: 'w1', taskTypes: [jobType === 'boundary.capped_job' ? 'boundary.capped' : 'boundary.render'], maxTasks: count }),
  });
  expect(claimed.status).toBe(200);
  return { jobId: job.jobId, tasks: (claimed.body as { tasks: Array<{ taskId: string; claimId: string }> }).tasks };
}

test('path ids with NUL, lone surrogates or the wrong form are 400 on every route that takes one, before any SQL', async () => {
  const before = await rowCounts(db.pool);
  const workerBody = JSON.stringify({ claimId: CLAIM, result: {}, error: { message: 'x' } });
  const routes: Array<[Handler, string, string, Record<string, string>, string?]> = [
    [getJobHandler, 'GET', 'jobId', {}],
    [listTasksHandler, 'GET', 'jobId', {}],
    [listEventsHandler, 'GET', 'jobId', {}],
    [controlJobHandler, 'POST', 'jobId', { action: 'cancel' }],
    [heartbeatHandler, 'POST', 'taskId', {}, workerBody],
    [completeHandler, 'POST', 'taskId', {}, workerBody],
    [failHandler, 'POST', 'taskId', {}, workerBody],
    [releaseHandler, 'POST', 'taskId', {}, workerBody],
  ];
  const hostile = [
    '\u0000',
    `${JOB}\u0000`,
    '\ud800',
    'x\udc00y',
    'nope',
    'A'.repeat(64),
    'a'.repeat(63),
    `${JOB}-s1-t`,
    `${JOB}-s1-t0; DROP TABLE x`,
    '../../etc/passwd',
    '',
  ];
  for (const [handler, method, name, extra, body] of routes) {
    for (const value of hostile) {
      const reply = await call(handler, method, 'x', { params: { ...extra, [name]: value }, ...(body ? { body } : {}) });
      const error = expectRefused(reply, 400, 'ValidationError');
      expect(error.issues?.length).toBeGreaterThan(0);
      if (value.includes('\u0000')) expect(error.message).toContain('NUL');
      if (value.includes('\ud800') || value.includes('\udc00')) expect(error.message).toContain('lone UTF-16 surrogate');
    }
  }
  // An action outside the route's regex (a caller bypassing the host's routing) is refused too.
  expectRefused(await call(controlJobHandler, 'POST', 'x', { params: { jobId: JOB, action: 'explode' } }), 400, 'ValidationError');
  expect(await rowCounts(db.pool)).toEqual(before);
});

test('query strings: garbage cursors, non-decimal and out-of-range integers, unknown statuses and NUL are 400 with the zod issues', async () => {
  const before = await rowCounts(db.pool);
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const cases: Array<[Handler, Record<string, string>, string]> = [
    [listJobsHandler, { cursor: 'garbage' }, 'cursor'],
    [listJobsHandler, { cursor: '!!!' }, 'cursor'],
    [listJobsHandler, { cursor: b64({ createdAt: '2020-01-01T00:00:00.000Z', jobId: JOB }) }, 'cursor'],
    [listJobsHandler, { cursor: b64(['yesterday', JOB]) }, 'cursor'],
    [listJobsHandler, { cursor: b64(['2020-01-01T00:00:00.000Z', 'nope']) }, 'cursor'],
    [listJobsHandler, { cursor: b64(['2020-01-01T00:00:00.000Z', JOB, 'extra']) }, 'cursor'],
    [listJobsHandler, { cursor: 'x'.repeat(600) }, 'cursor'],
    [listJobsHandler, { jobType: 'x'.repeat(201) }, 'jobType'],
    [listJobsHandler, { status: 'SLEEPING' }, 'status'],
    [listJobsHandler, { limit: '0' }, 'limit'],
    [listJobsHandler, { limit: '501' }, 'limit'],
    [listJobsHandler, { limit: '1e2' }, 'limit'],
    [listJobsHandler, { limit: '0x10' }, 'limit'],
    [listJobsHandler, { limit: ' 7' }, 'limit'],
    [listTasksHandler, { stage: '99999999999' }, 'stage'],
    [listTasksHandler, { stage: '0' }, 'stage'],
    [listTasksHandler, { stage: '-1' }, 'stage'],
    [listTasksHandler, { stage: '1.5' }, 'stage'],
    [listTasksHandler, { status: 'DONE' }, 'status'],
    [listTasksHandler, { limit: '5001' }, 'limit'],
    [listTasksHandler, { afterIndex: '-2' }, 'afterIndex'],
    [listTasksHandler, { afterIndex: '2147483648' }, 'afterIndex'],
    [listEventsHandler, { afterId: '1e30' }, 'afterId'],
    [listEventsHandler, { afterId: '-1' }, 'afterId'],
    [listEventsHandler, { afterId: '9007199254740992' }, 'afterId'],
    [listEventsHandler, { afterId: '9'.repeat(400) }, 'afterId'],
    [listEventsHandler, { limit: 'abc' }, 'limit'],
    [listEventsHandler, { limit: '5001' }, 'limit'],
    [listDeadLettersHandler, { limit: 'abc' }, 'limit'],
    [listDeadLettersHandler, { limit: '1.5' }, 'limit'],
    [listDeadLettersHandler, { limit: '1001' }, 'limit'],
    [listDeadLettersHandler, { beforeId: 'abc' }, 'beforeId'],
    [listDeadLettersHandler, { beforeId: '0' }, 'beforeId'],
    [listDeadLettersHandler, { beforeId: '1e30' }, 'beforeId'],
    [listDeadLettersHandler, { jobId: 'nope' }, 'jobId'],
  ];
  for (const [handler, query, key] of cases) {
    const error = expectRefused(await call(handler, 'GET', 'x', { params: { jobId: JOB }, query }), 400, 'ValidationError');
    const paths = [...new Set((error.issues as Array<{ path: unknown[] }>).map((issue) => JSON.stringify(issue.path)))];
    expect({ query, paths }).toEqual({ query, paths: [JSON.stringify([key])] });
  }
  // NUL anywhere in the query, in a parameter the route reads or not, in a name or a value.
  const nulQueries: Array<Record<string, string>> = [{ jobId: '\u0000' }, { status: 'FAILED\u0000' }, { unrelated: '\u0000' }, { 'na\u0000me': '1' }];
  for (const query of nulQueries) {
    const error = expectRefused(await call(listDeadLettersHandler, 'GET', 'dead-letters', { query }), 400, 'ValidationError');
    expect(error.message).toContain('NUL');
  }
  expect(await rowCounts(db.pool)).toEqual(before);
});

test('a bad integer in a query says what is wrong with it: not decimal digits, below the minimum, above the maximum', async () => {
  const cases: Array<[Handler, Record<string, string>, string]> = [
    [listJobsHandler, { limit: 'abc' }, 'expected an integer written in decimal digits'],
    [listJobsHandler, { limit: '1.5' }, 'expected an integer written in decimal digits'],
    [listJobsHandler, { limit: '0' }, 'expected at least 1'],
    [listJobsHandler, { limit: '501' }, 'expected at most 500'],
    [listTasksHandler, { afterIndex: '-2' }, 'expected at least -1'],
    [listEventsHandler, { afterId: '9007199254740992' }, `expected at most ${Number.MAX_SAFE_INTEGER}`],
  ];
  for (const [handler, query, message] of cases) {
    const error = expectRefused(await call(handler, 'GET', 'x', { params: { jobId: JOB }, query }), 400, 'ValidationError');
    expect({ query, messages: (error.issues as Array<{ message: string }>).map((issue) => issue.message) }).toEqual({ query, messages: [message] });
  }
  // From code a number can be a fraction, which a query string cannot.
  expect(ListJobsQuery.safeParse({ limit: 2.5 }).error?.issues.map((issue) => issue.message)).toEqual(['expected a whole number']);
});

test('queries that are valid still work: empty values mean the default, cursors page on, unknown keys are ignored', async () => {
  const ids = [];
  for (const n of [1, 2, 3]) ids.push((await machine.submitJob('hello_world', { n })).job.jobId);
  const first = await call(listJobsHandler, 'GET', 'jobs', { query: { limit: '2', jobType: 'hello_world', status: '', whatever: 'x' } });
  expect(first.status).toBe(200);
  const page1 = first.body as { jobs: Array<{ jobId: string }>; nextCursor: string };
  const second = await call(listJobsHandler, 'GET', 'jobs', { query: { limit: '2', jobType: 'hello_world', cursor: page1.nextCursor } });
  expect(second.status).toBe(200);
  const page2 = second.body as { jobs: Array<{ jobId: string }>; nextCursor: string | null };
  expect([...page1.jobs, ...page2.jobs].map((job) => job.jobId).sort()).toEqual([...ids].sort());
  expect(page2.nextCursor).toBeNull();
  const [id] = ids as [string];
  expect((await call(listEventsHandler, 'GET', 'x', { params: { jobId: id }, query: { afterId: '0', limit: '5000' } })).status).toBe(200);
  expect((await call(listTasksHandler, 'GET', 'x', { params: { jobId: id }, query: { stage: '2147483647', afterIndex: '-1' } })).body).toEqual({ tasks: [] });
  expect((await call(listDeadLettersHandler, 'GET', 'x', { query: { beforeId: String(Number.MAX_SAFE_INTEGER), jobId: id, limit: '1000' } })).body).toEqual({
    deadLetters: [],
  });
  for (const jobId of ids) await machine.cancelJob(jobId);
});

test('bodies holding NUL or lone surrogates (values or keys, at any depth), nesting too deep or invalid UTF-8 are 400 and store nothing', async () => {
  const before = await rowCounts(db.pool);
  const submit = (body: string | Uint8Array, jobType = 'word_frequencies') => call(submitJobHandler, 'POST', `jobs/${jobType}`, { body, params: { jobType } });
  const bodies: Array<[string, string | RegExp]> = [
    ['{"directory":"data\\u0000"}', /NUL .*\(at "directory"\)/],
    ['{"directory":"data","extension":"\\ud800"}', /lone UTF-16 surrogate.*\(at "extension"\)/],
    ['{"directory":"data","extension":"\\udfff.txt"}', 'lone UTF-16 surrogate'],
    ['{"directory":"data","x\\u0000":1}', /key contains a NUL/],
    ['{"directory":"data","deep":{"a":[1,{"b":"\\u0000"}]}}', '(at "deep" → "a" → 1 → "b")'],
    [`{"directory":"data","deep":${'['.repeat(100)}${']'.repeat(100)}}`, 'nested deeper than 64 levels'],
    [`${'['.repeat(100_000)}${']'.repeat(100_000)}`, 'nested deeper than 64 levels'],
  ];
  for (const [body, message] of bodies) {
    const error = expectRefused(await submit(body), 400, 'ValidationError');
    expect(error.message).toMatch(message);
    expect(error.issues?.length).toBeGreaterThan(0);
  }
  // A well-paired surrogate (an emoji) is ordinary text, not refused for being a surrogate.
  expect(expectRefused(await submit('{"directory":"😀","topK":0}'), 400, 'ValidationError').message).not.toContain('surrogate');
  expectRefused(await submit(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), 400, 'ValidationError');
  for (const body of [
    '{"directory": 7}',
    '{"directory":"d","topK":1e400}',
    '{"directory":"d","topK":99999999999999999999}',
    '[]',
    'null',
    '"x"',
    '{"directory":"d","topK":"5"}',
  ]) {
    expectRefused(await submit(body), 400, 'ValidationError');
  }
  expectRefused(await submit('{"n":1}', 'x'.repeat(201)), 400, 'ValidationError');
  expectRefused(await submit('{"n":1}', 'hello\u0000world'), 400, 'ValidationError');
  expectRefused(await submit('{"n":1}', 'no_such_job'), 404, 'UnknownJobTypeError');
  expect(await rowCounts(db.pool)).toEqual(before);
});

test('remote workers: workerId, failure type and message are bounded and NUL-free; bad bodies are 400 before any SQL', async () => {
  const before = await rowCounts(db.pool);
  const claim = (body: unknown) => call(claimHandler, 'POST', 'workers/claim', { body: JSON.stringify(body) });
  for (const body of [
    { workerId: 'w\u0000', taskTypes: ['boundary.render'] },
    { workerId: 'w'.repeat(201), taskTypes: ['boundary.render'] },
    { workerId: '\ud800', taskTypes: ['boundary.render'] },
    { workerId: 'w', taskTypes: ['boundary.render\u0000'] },
    { workerId: 'w', taskTypes: ['t'.repeat(201)] },
    { workerId: 'w', taskTypes: [] },
    { workerId: 'w', taskTypes: ['boundary.render'], maxTasks: 1e9 },
    { workerId: 'w', taskTypes: ['boundary.render'], leaseSeconds: 1e15 },
    { workerId: 7, taskTypes: 'boundary.render' },
  ]) {
    expectRefused(await claim(body), 400, 'ValidationError');
  }
  const fail = (error: unknown, extra: object = {}) =>
    call(failHandler, 'POST', 'x', { params: { taskId: TASK }, body: JSON.stringify({ claimId: CLAIM, error, ...extra }) });
  const tooLong = expectRefused(await fail({ message: 'm'.repeat(8 * 1024 + 1) }), 400, 'ValidationError');
  expect(tooLong.issues).toEqual([expect.objectContaining({ path: ['error', 'message'], code: 'too_big', maximum: 8192 })]);
  expectRefused(await fail({ type: 't'.repeat(201), message: 'm' }), 400, 'ValidationError');
  expectRefused(await fail({ message: 'boom\u0000' }), 400, 'ValidationError');
  expectRefused(await fail({ message: '' }), 400, 'ValidationError');
  expectRefused(await fail({ message: 'm' }, { retryAfterMs: -1 }), 400, 'ValidationError');
  expectRefused(await fail({ message: 'm' }, { retryAfterMs: 1.5 }), 400, 'ValidationError');
  expectRefused(await fail({ message: 'm' }, { retryAfterMs: 2 ** 53 }), 400, 'ValidationError');
  const complete = await call(completeHandler, 'POST', 'x', { params: { taskId: TASK }, body: JSON.stringify({ claimId: CLAIM, result: { 'k\u0000': 1 } }) });
  expectRefused(complete, 400, 'ValidationError');
  expectRefused(
    await call(heartbeatHandler, 'POST', 'x', { params: { taskId: TASK }, body: JSON.stringify({ claimId: 'not-a-uuid' }) }),
    400,
    'ValidationError',
  );
  expect(await rowCounts(db.pool)).toEqual(before);
});

test('an unknown task is 404 on heartbeat, complete, fail and release alike; a claim that is not current is 409', async () => {
  const body = JSON.stringify({ claimId: CLAIM, result: { ok: true }, error: { message: 'x' } });
  for (const handler of [heartbeatHandler, completeHandler, failHandler, releaseHandler]) {
    expectRefused(await call(handler, 'POST', 'x', { params: { taskId: TASK }, body }), 404, 'TaskNotFoundError');
  }
  const { jobId, tasks } = await remoteTasks('boundary.render_job', 1);
  const [task] = tasks as [{ taskId: string; claimId: string }];
  expect((await call(releaseHandler, 'POST', 'x', { params: { taskId: task.taskId } })).status).toBe(200);
  // Released: the task is QUEUED, so there is no claim to release, complete or heartbeat.
  expectRefused(await call(releaseHandler, 'POST', 'x', { params: { taskId: task.taskId } }), 409, 'LeaseLostError');
  for (const handler of [heartbeatHandler, completeHandler]) {
    expectRefused(
      await call(handler, 'POST', 'x', { params: { taskId: task.taskId }, body: JSON.stringify({ claimId: task.claimId, result: { ok: true } }) }),
      409,
      'LeaseLostError',
    );
  }
  await machine.cancelJob(jobId);
});

test('remote fail: a retryAfterMs of 2^53-1 or 1e15 is capped by the retry policy or MAX_RETRY_DELAY_MS, never an invalid date', async () => {
  const cases: Array<[string, number, number]> = [
    ['boundary.render_job', Number.MAX_SAFE_INTEGER, MAX_RETRY_DELAY_MS],
    ['boundary.render_job', 1e15, MAX_RETRY_DELAY_MS],
    ['boundary.capped_job', Number.MAX_SAFE_INTEGER, 60_000],
    ['boundary.capped_job', 1e15, 60_000],
  ];
  expect(MAX_RETRY_DELAY_MS).toBe(24 * 60 * 60 * 1000);
  const { jobId: renderJobId, tasks: renderTasks } = await remoteTasks('boundary.render_job', 2);
  const { jobId: cappedJobId, tasks: cappedTasks } = await remoteTasks('boundary.capped_job', 2);
  const queue = { 'boundary.render_job': renderTasks, 'boundary.capped_job': cappedTasks } as Record<string, Array<{ taskId: string; claimId: string }>>;
  for (const [jobType, retryAfterMs, cap] of cases) {
    const task = queue[jobType]?.shift();
    if (!task) throw new Error(`no claimed task left for ${jobType}`);
    const sent = Date.now();
    const reply = await call(failHandler, 'POST', 'x', {
      params: { taskId: task.taskId },
      body: JSON.stringify({ claimId: task.claimId, error: { message: 'rate limited' }, retryAfterMs }),
    });
    expect(reply.status).toBe(200);
    const retryAt = Date.parse((reply.body as { retryAt: string }).retryAt);
    expect(retryAt).toBeGreaterThanOrEqual(sent + cap - 1000);
    expect(retryAt).toBeLessThanOrEqual(Date.now() + cap);
    const stored = await db.pool.query<{ status: string; due: boolean }>(
      'SELECT status, retry_at <= now() + make_interval(secs => $2::float8 / 1000) AS due FROM coremachine.tasks WHERE task_id = $1',
      [task.taskId, cap],
    );
    expect(stored.rows[0]).toEqual({ status: 'QUEUED', due: true });
  }
  await machine.cancelJob(renderJobId);
  await machine.cancelJob(cappedJobId);
});

test('a database refusing connections when the app starts is a 503 with Retry-After, not a 500', async () => {
  setAppContext(undefined);
  setTransportFactory(() => new InProcessTransport());
  const saved = { url: process.env.DATABASE_URL, level: process.env.LOG_LEVEL };
  process.env.DATABASE_URL = 'postgres://postgres@127.0.0.1:1/closed_port';
  process.env.LOG_LEVEL = 'silent';
  try {
    const reply = await call(getJobHandler, 'GET', 'x', { params: { jobId: JOB } });
    expect(reply.status).toBe(503);
    expect(reply.headers.get('retry-after')).toBe('5');
    expect(reply.body).toEqual({ error: { type: 'UnavailableError', message: expect.stringContaining('unavailable for now') as string } });
    const logged = invocationLogs.find((line) => line.startsWith('error') && line.includes('coremachine.http.unavailable'));
    expect(logged).toContain('ECONNREFUSED');
    // Bad input is still answered without the database.
    expectRefused(await call(getJobHandler, 'GET', 'x', { params: { jobId: 'nope' } }), 400, 'ValidationError');
  } finally {
    for (const [key, value] of [
      ['DATABASE_URL', saved.url],
      ['LOG_LEVEL', saved.level],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
});

/** A TCP relay to PostgreSQL that a test can cut: every connection through it dies at once. */
async function startRelay(target: URL): Promise<{ port: number; cut: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    cut: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

test('connections cut under a running app (killed mid-session, then refused) give 503 with Retry-After; the app recovers', async () => {
  const target = new URL(db.url);
  const relay = await startRelay(target);
  const relayed = new URL(db.url);
  relayed.host = `127.0.0.1:${relay.port}`;
  const pool = createPool(relayed.toString(), 2);
  try {
    const relayedMachine = await CoreMachine.create({ pool, registry: appRegistry(), transport, logger: createLogger('silent') });
    useApp(pool, relayedMachine);
    expectRefused(await call(getJobHandler, 'GET', 'x', { params: { jobId: JOB } }), 404, 'JobNotFoundError');
    // A query in flight when the relay dies: the driver sees its connection terminated.
    const held = await pool.connect();
    const inFlight = held.query('SELECT pg_sleep(5)');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await relay.cut();
    await expect(inFlight).rejects.toThrow(/terminated|ended|closed/i);
    held.release(true);
    for (const handler of [getJobHandler, listEventsHandler, listTasksHandler]) {
      const reply = await call(handler, 'GET', 'x', { params: { jobId: JOB } });
      expect(reply.status).toBe(503);
      expect(reply.headers.get('retry-after')).toBe('5');
      expect(reply.body).toEqual({ error: { type: 'UnavailableError', message: expect.any(String) as string } });
      expect(JSON.stringify(reply.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    }
    expect(invocationLogs.filter((line) => line.startsWith('error') && line.includes('coremachine.http.unavailable'))).toHaveLength(3);
  } finally {
    await pool.end();
  }
});

test('a message queue that is busy is a 503 with Retry-After; the job was committed, so the retry finds it', async () => {
  // The same in-process queues, except that Service Bus answers every job message "busy".
  const busy = Object.assign(Object.create(transport) as Transport, {
    sendJobMessages: () => Promise.reject(new ServiceBusError('the service is busy, try again later', 'ServiceBusy')),
  });
  const busyMachine = await CoreMachine.create({ pool: db.pool, registry: appRegistry(), transport: busy, logger: createLogger('silent') });
  useApp(db.pool, busyMachine);
  const submit = () => call(submitJobHandler, 'POST', 'jobs/hello_world', { body: '{"n":7}', params: { jobType: 'hello_world' } });
  const reply = await submit();
  expect(reply.status).toBe(503);
  expect(reply.headers.get('retry-after')).toBe('5');
  expect(reply.body).toEqual({ error: { type: 'UnavailableError', message: 'the message queue is unavailable for now: retry in 5 seconds' } });
  expect(invocationLogs.some((line) => line.startsWith('error') && line.includes('ServiceBusError'))).toBe(true);
  // The job and its message intent were committed before the send: the janitor resends it, and a
  // client that retries gets the same job back.
  useApp();
  const again = await submit();
  expect(again.status).toBe(200);
  await machine.cancelJob((again.body as { jobId: string }).jobId);
});

test('a real server fault (the schema dropped under a running app) is a generic 500, logged at error with the driver error and stack', async () => {
  const broken = await createTestDatabase({ poolMax: 2 });
  try {
    const brokenMachine = await CoreMachine.create({ pool: broken.pool, registry: appRegistry(), transport, logger: createLogger('silent') });
    await broken.pool.query('DROP SCHEMA coremachine CASCADE');
    useApp(broken.pool, brokenMachine);
    const reply = await call(getJobHandler, 'GET', 'x', { params: { jobId: JOB } });
    expect(reply.status).toBe(500);
    expect(reply.body).toEqual({
      error: { type: 'InternalError', message: expect.stringMatching(/^internal error: the server log has the details under invocation \S+$/) as string },
    });
    expect(JSON.stringify(reply.body)).not.toContain('relation');
    const logged = invocationLogs.filter((line) => line.startsWith('error') && line.includes('coremachine.http.error'));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/relation \\"coremachine\.jobs\\" does not exist/);
    expect(logged[0]).toContain('"stack"');
  } finally {
    useApp();
    await broken.drop();
  }
});
