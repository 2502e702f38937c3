import { app, HttpRequest, HttpResponse, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { createPool } from '../core/db/pool';
import type { CoreMachine } from '../core/engine/core-machine';
import { createLogger } from '../core/logger';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { createAppContext, getAppContext, setAppContext, setTransportFactory } from '../functions/app-context';
import { dashboardHandler } from '../functions/http-dashboard';
import { deleteJobHandler } from '../functions/http-delete';
import { healthDetailsHandler, healthHandler } from '../functions/http-health';
import { signalJobHandler } from '../functions/http-signals';
import { getJobHandler, listJobsHandler, listTasksHandler, submitJobHandler } from '../functions/http-jobs';
import { deadLetterHandler, jobMessageHandler, submissionHandler, taskMessagesHandler } from '../functions/servicebus-triggers';
import { controlJobHandler, listDeadLettersHandler, listEventsHandler } from '../functions/http-control';
import '../functions/index';
import { captureLogger, startHarness, stuckJobs, type Harness } from './support/harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import type { TaskQueueMessage } from '../models';

// Outside a Functions host the package only warns that registration is skipped; recording the
// registrations instead lets the test check routes, methods, auth levels and queue bindings.
jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));

// Taken at load, when the imports above registered, so no later mock reset can lose them.
const httpRegistrations = [...jest.mocked(app.http).mock.calls];
const queueRegistrations = [...jest.mocked(app.serviceBusQueue).mock.calls];
const timerRegistrations = [...jest.mocked(app.timer).mock.calls];

type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;
interface Reply {
  status: number;
  body: unknown;
  headers: Headers;
}
interface JobJson {
  jobId: string;
  status: string;
}

let db: TestDatabase;
let h: Harness;
/** What the handlers wrote through context.log/error, as the host would record it. */
let invocationLogs: string[];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});
beforeEach(async () => {
  invocationLogs = [];
  h = await startHarness(db.pool, { worker: false });
  setAppContext({ machine: h.machine, pool: db.pool, transport: h.transport, logger: captureLogger(h.logs) });
});
afterEach(async () => {
  jest.restoreAllMocks();
  setAppContext(undefined);
  setTransportFactory(undefined);
  await h.stop();
  expect(await stuckJobs(db.pool)).toEqual([]);
});

function invocation(triggerMetadata?: Record<string, unknown>): InvocationContext {
  return new InvocationContext({
    functionName: 'test',
    triggerMetadata,
    logHandler: (level, ...args) => invocationLogs.push(`${level} ${args.map((arg) => (typeof arg === 'string' ? arg : JSON.stringify(arg))).join(' ')}`),
  });
}

/** Calls a handler and reads the response the way the wire would carry it (dates become strings). */
async function call(
  handler: Handler,
  method: string,
  path: string,
  init: { body?: string; params?: Record<string, string>; query?: Record<string, string> } = {},
): Promise<Reply> {
  const request = new HttpRequest({
    method,
    url: `http://localhost:7071/api/${path}`,
    body: init.body === undefined ? undefined : { string: init.body },
    params: init.params ?? {},
    query: init.query ?? {},
  });
  const response = new HttpResponse(await handler(request, invocation()));
  return { status: response.status, body: await response.json(), headers: response.headers };
}

/** Plays the Service Bus host: receive, invoke the trigger, complete on success. */
async function driveToEnd(jobId: string, machine: CoreMachine = h.machine, transport: InProcessTransport = h.transport): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const job = await machine.getJob(jobId);
    if (!['QUEUED', 'PROCESSING'].includes(job.status)) return;
    for (const message of transport.jobs.receive(1)) {
      // Job bodies go in as JSON text, task bodies as objects: the host can deliver either.
      await jobMessageHandler(JSON.stringify(message.body), invocation({ messageId: message.messageId, deliveryCount: message.deliveryCount }));
      transport.jobs.complete(message);
    }
    const tasks = transport.tasks.receive(16);
    if (tasks.length > 0) {
      await taskMessagesHandler(
        tasks.map((m) => m.body),
        invocation({ messageIdArray: tasks.map((m) => m.messageId), deliveryCountArray: tasks.map((m) => m.deliveryCount) }),
      );
      for (const message of tasks) transport.tasks.complete(message);
    }
  }
  throw new Error(`job ${jobId} did not finish in 50 rounds`);
}

test('registrations: routes split by method, function-key auth on jobs, anonymous health, both queues', () => {
  const http = httpRegistrations.map(([name, o]) => [name, o.methods, o.route, o.authLevel, o.handler]);
  expect(http).toHaveLength(27);
  // A task's log lines (ctx.log), paged.
  expect(http.filter(([name]) => name === 'jobs-task-logs').map(([, methods, route]) => [methods, route])).toEqual([
    [['GET'], 'jobs/{jobId}/tasks/{taskId}/logs'],
  ]);
  // The values job and task views link to when they are in the payload store (docs/payloads.md).
  expect(
    http.filter(([name]) => ['jobs-result', 'jobs-task-result', 'jobs-task-parameters'].includes(String(name))).map(([, methods, route]) => [methods, route]),
  ).toEqual([
    [['GET'], 'jobs/{jobId}/result'],
    [['GET'], 'jobs/{jobId}/tasks/{taskId}/result'],
    [['GET'], 'jobs/{jobId}/tasks/{taskId}/parameters'],
  ]);
  expect(http.filter(([name]) => String(name).startsWith('workers-')).map(([, methods, route]) => [methods, route])).toEqual([
    [['GET'], 'workers'],
    [['POST'], 'workers/claim'],
    [['POST'], 'workers/tasks/{taskId}/heartbeat'],
    [['POST'], 'workers/tasks/{taskId}/complete'],
    [['POST'], 'workers/tasks/{taskId}/fail'],
    [['POST'], 'workers/tasks/{taskId}/release'],
  ]);
  // The janitor runs on a timer whose schedule is an app setting (JANITOR_SCHEDULE).
  expect(timerRegistrations.map(([name, o]) => [name, o.schedule])).toEqual([['janitor', '%JANITOR_SCHEDULE%']]);
  // Every route but health needs a function key: no unauthenticated way to submit, read or change jobs.
  expect(httpRegistrations.filter(([, o]) => o.authLevel !== 'function').map(([name]) => name)).toEqual(['health']);
  expect(http).toEqual(
    expect.arrayContaining([
      ['jobs-submit', ['POST'], 'jobs/{jobType}', 'function', submitJobHandler],
      ['jobs-get', ['GET'], 'jobs/{jobId}', 'function', getJobHandler],
      ['jobs-list', ['GET'], 'jobs', 'function', listJobsHandler],
      ['jobs-tasks', ['GET'], 'jobs/{jobId}/tasks', 'function', listTasksHandler],
      ['health', ['GET'], 'health', 'anonymous', healthHandler],
      ['health-details', ['GET'], 'health/details', 'function', healthDetailsHandler],
      ['jobs-control', ['POST'], 'jobs/{jobId}/{action:regex(^(cancel|pause|resume|retry)$)}', 'function', controlJobHandler],
      ['jobs-events', ['GET'], 'jobs/{jobId}/events', 'function', listEventsHandler],
      ['dead-letters', ['GET'], 'dead-letters', 'function', listDeadLettersHandler],
      ['dashboard', ['GET'], 'dashboard', 'function', dashboardHandler],
      ['jobs-delete', ['DELETE'], 'jobs/{jobId}', 'function', deleteJobHandler],
      ['jobs-signal', ['POST'], 'jobs/{jobId}/signals/{name}', 'function', signalJobHandler],
    ]),
  );
  const queues = queueRegistrations.map(([name, o]) => [name, o.queueName, o.connection, o.cardinality, o.handler]);
  expect(queues).toEqual([
    ['jobs-queue', 'coremachine-jobs', 'ServiceBusConnection', 'one', jobMessageHandler],
    ['tasks-queue', 'coremachine-tasks', 'ServiceBusConnection', 'many', taskMessagesHandler],
    ['submissions-queue', 'coremachine-submissions', 'ServiceBusConnection', 'one', submissionHandler],
    ['jobs-dead-letters', 'coremachine-jobs/$deadletterqueue', 'ServiceBusConnection', 'one', expect.any(Function)],
    ['submissions-dead-letters', 'coremachine-submissions/$deadletterqueue', 'ServiceBusConnection', 'one', expect.any(Function)],
    ['tasks-dead-letters', 'coremachine-tasks/$deadletterqueue', 'ServiceBusConnection', 'one', expect.any(Function)],
  ]);
});

test('hello_world through the HTTP API and the Service Bus triggers, to COMPLETED', async () => {
  const submitted = await call(submitJobHandler, 'POST', 'jobs/hello_world', { body: JSON.stringify({ n: 3 }), params: { jobType: 'hello_world' } });
  expect(submitted.status).toBe(202);
  const { jobId } = submitted.body as JobJson;
  expect(jobId).toMatch(/^[0-9a-f]{64}$/);
  expect(submitted.headers.get('location')).toBe(`/api/jobs/${jobId}`);

  const again = await call(submitJobHandler, 'POST', 'jobs/hello_world', { body: '{"n":3}', params: { jobType: 'hello_world' } });
  expect(again.status).toBe(200);
  expect((again.body as JobJson).jobId).toBe(jobId);

  await driveToEnd(jobId);
  expect(h.transport.jobs.deadLetters).toEqual([]);
  expect(h.transport.jobs.activeCount + h.transport.tasks.activeCount).toBe(0);

  const job = await call(getJobHandler, 'GET', `jobs/${jobId}`, { params: { jobId } });
  expect(job.status).toBe(200);
  expect(job.body).toMatchObject({
    jobId,
    jobType: 'hello_world',
    status: 'COMPLETED',
    error: null,
    result: { greetings: 3, replies: 3, summary: '3 of 3 greetings answered' },
    stages: [
      { stage: 1, name: 'greet', status: 'COMPLETED', total: 3, completed: 3, failed: 0 },
      { stage: 2, name: 'reply', status: 'COMPLETED', total: 3, completed: 3, failed: 0 },
    ],
  });

  const listed = await call(listJobsHandler, 'GET', 'jobs', { query: { status: 'COMPLETED', jobType: 'hello_world', limit: '10' } });
  expect(listed.status).toBe(200);
  expect(listed.body).toMatchObject({ jobs: [{ jobId, status: 'COMPLETED' }], nextCursor: null });

  const tasks = await call(listTasksHandler, 'GET', `jobs/${jobId}/tasks`, { params: { jobId }, query: { stage: '1' } });
  expect(tasks.status).toBe(200);
  const taskList = (tasks.body as { tasks: Array<{ stage: number; status: string; attempt: number }> }).tasks;
  expect(taskList).toHaveLength(3);
  expect(taskList.every((t) => t.stage === 1 && t.status === 'COMPLETED' && t.attempt === 1)).toBe(true);

  // Each trigger log line carries the Service Bus messageId it was about.
  expect(invocationLogs.some((line) => line.includes(`"messageId":"${jobId}:s1"`))).toBe(true);
});

test('bad requests answer with typed JSON errors and store nothing', async () => {
  const before = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs');
  const submit = (body: string, jobType = 'hello_world') => call(submitJobHandler, 'POST', `jobs/${jobType}`, { body, params: { jobType } });

  const invalid = await submit('{}');
  expect(invalid.status).toBe(400);
  expect(invalid.body).toMatchObject({ error: { type: 'ValidationError', message: expect.stringContaining('hello_world') as string } });
  expect((invalid.body as { error: { issues: Array<{ path: unknown[] }> } }).error.issues.map((issue) => issue.path)).toEqual([['n']]);

  for (const body of ['{"n": 3', 'hello', '']) {
    const notJson = await submit(body);
    expect(notJson.status).toBe(400);
    expect(notJson.body).toMatchObject({ error: { type: 'ValidationError' } });
  }

  const tooLarge = await submit(JSON.stringify({ n: 3, padding: 'x'.repeat(300 * 1024) }));
  expect(tooLarge.status).toBe(413);
  expect(tooLarge.body).toMatchObject({ error: { type: 'PayloadTooLargeError' } });

  const unknownType = await submit('{"n":1}', 'no_such_job');
  expect(unknownType.status).toBe(404);
  expect(unknownType.body).toMatchObject({ error: { type: 'UnknownJobTypeError', message: expect.stringContaining('hello_world') as string } });

  const missing = 'f'.repeat(64);
  const unknownJob = await call(getJobHandler, 'GET', `jobs/${missing}`, { params: { jobId: missing } });
  expect(unknownJob.status).toBe(404);
  expect(unknownJob.body).toMatchObject({ error: { type: 'JobNotFoundError', message: expect.stringContaining(missing) as string } });
  const unknownTasks = await call(listTasksHandler, 'GET', `jobs/${missing}/tasks`, { params: { jobId: missing } });
  expect(unknownTasks.status).toBe(404);

  const badQuery = await call(listJobsHandler, 'GET', 'jobs', { query: { limit: 'lots', status: 'SLEEPING' } });
  expect(badQuery.status).toBe(400);
  expect(badQuery.body).toMatchObject({ error: { type: 'ValidationError' } });

  const after = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs');
  expect(after.rows[0]?.n).toBe(before.rows[0]?.n);
});

test('an unexpected error is a generic 500, logged at error with its type, message and cause', async () => {
  const jobId = 'a'.repeat(64);
  jest.spyOn(h.machine, 'getJob').mockRejectedValueOnce(new TypeError('database answered nonsense', { cause: new Error('the root of it') }));
  const reply = await call(getJobHandler, 'GET', `jobs/${jobId}`, { params: { jobId } });
  expect(reply.status).toBe(500);
  // The client learns nothing internal, only where the operator finds the details.
  expect(reply.body).toEqual({
    error: { type: 'InternalError', message: expect.stringMatching(/^internal error: the server log has the details under invocation \S+$/) as string },
  });
  const logged = invocationLogs.find((line) => line.startsWith('error') && line.includes('coremachine.http.error'));
  expect(logged).toContain('database answered nonsense');
  expect(logged).toContain('the root of it');
});

test('health: 200 with the database reachable, the schema up to date and the transport named', async () => {
  const reply = await call(healthHandler, 'GET', 'health');
  expect(reply.status).toBe(200);
  expect(reply.body).toMatchObject({ status: 'healthy', database: { reachable: true }, schema: { upToDate: true }, transport: 'in-process' });
});

test('health: 503 when the database cannot be reached; anonymous callers get a generic reason, the keyed route and the log the driver error', async () => {
  const unreachable = createPool('postgres://nobody@127.0.0.1:1/nothing', 1);
  try {
    setAppContext({ machine: h.machine, pool: unreachable, transport: h.transport, logger: createLogger('silent') });
    const reply = await call(healthHandler, 'GET', 'health');
    expect(reply.status).toBe(503);
    expect(reply.body).toEqual({
      status: 'unhealthy',
      database: { reachable: false },
      schema: null,
      transport: 'in-process',
      reason: 'the database cannot be reached; the details are logged and shown by GET /api/health/details with the function key',
    });
    expect(JSON.stringify(reply.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|nobody/);
    const detailed = await call(healthDetailsHandler, 'GET', 'health/details');
    expect(detailed.status).toBe(503);
    expect(detailed.body).toMatchObject({
      status: 'unhealthy',
      database: { reachable: false, error: { message: expect.stringContaining('ECONNREFUSED') as string } },
    });
    expect(invocationLogs.some((line) => line.includes('coremachine.health') && line.includes('ECONNREFUSED'))).toBe(true);
  } finally {
    await unreachable.end();
  }
});

test('health: an engine that cannot start (a bad host name) says so generically to anonymous callers', async () => {
  setAppContext(undefined);
  setTransportFactory(() => h.transport);
  const saved = process.env.DATABASE_URL;
  process.env.DATABASE_URL = 'postgres://secret_role@no-such-host.invalid:5432/db';
  try {
    const reply = await call(healthHandler, 'GET', 'health');
    expect(reply.status).toBe(503);
    expect(reply.body).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/^CoreMachine could not start;/) as string });
    expect(JSON.stringify(reply.body)).not.toMatch(/secret_role|no-such-host|ENOTFOUND/);
    expect(JSON.stringify((await call(healthDetailsHandler, 'GET', 'health/details')).body)).toMatch(/no-such-host|ENOTFOUND/);
  } finally {
    process.env.DATABASE_URL = saved;
    setAppContext(undefined);
  }
});

test('Service Bus trigger: a pack is handled task by task; delivered again, it is split into single messages and nothing runs twice', async () => {
  const submitted = await call(submitJobHandler, 'POST', 'jobs/hello_world', { body: JSON.stringify({ n: 300 }), params: { jobType: 'hello_world' } });
  const { jobId } = submitted.body as JobJson;
  for (const message of h.transport.jobs.receive(1)) {
    await jobMessageHandler(message.body, invocation({ messageId: message.messageId, deliveryCount: message.deliveryCount }));
    h.transport.jobs.complete(message);
  }
  // The stage's first chunk of 100 tasks goes out in packs of 3.
  const [pack] = h.transport.tasks.receive(1);
  if (!pack) throw new Error('no task message');
  expect((pack.body as { packed: TaskQueueMessage[] }).packed).toHaveLength(3);
  expect(pack.applicationProperties).toMatchObject({ jobId, packed: 3 });
  // Its host died before settling it: the redelivery is split, unhandled, into three single messages.
  const sentBefore = h.transport.tasks.stats.sent;
  await taskMessagesHandler([pack.body], invocation({ messageIdArray: [pack.messageId], deliveryCountArray: [2] }));
  h.transport.tasks.complete(pack);
  expect(h.transport.tasks.stats.sent - sentBefore).toBe(3);
  expect(invocationLogs.some((line) => line.includes('coremachine.message.split'))).toBe(true);
  await driveToEnd(jobId);
  const job = (await call(getJobHandler, 'GET', `jobs/${jobId}`, { params: { jobId } })).body as JobJson & { stages: Array<{ completed: number }> };
  expect(job.status).toBe('COMPLETED');
  expect(job.stages.map((stage) => stage.completed)).toEqual([300, 300]);
  const attempts = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND attempt <> 1', [jobId]);
  expect(attempts.rows[0]?.n).toBe(0);
});

test('malformed task messages are logged with their messageId and completed, not thrown', async () => {
  const ghostJob = '0'.repeat(64);
  // Well-formed ids that point at nothing: a task that does not exist.
  const ghost = { taskId: `${ghostJob}-s1-t0`, jobId: ghostJob, stage: 1, taskType: 'hello_world.greet', attempt: 1 };
  await expect(
    taskMessagesHandler(['{not json', { bogus: true }, ghost], invocation({ messageIdArray: ['m-text', 'm-shape', 'm-ghost'], deliveryCountArray: [1, 2, 3] })),
  ).resolves.toBeUndefined();
  const discarded = invocationLogs.filter((line) => line.includes('coremachine.message.discarded'));
  expect(discarded).toHaveLength(3);
  expect(discarded[0]).toMatch(/"messageId":"m-text".*"deliveryCount":1.*not JSON.*"body":"\{not json"/);
  expect(discarded[1]).toMatch(/"messageId":"m-shape".*MalformedMessageError/);
  expect(discarded[2]).toMatch(/"messageId":"m-ghost".*TaskNotFoundError/);
  // ...and recorded where an operator sees them through the API.
  const listed = await call(listDeadLettersHandler, 'GET', 'dead-letters');
  const letters = (listed.body as { deadLetters: Array<{ messageId: string; reason: string; body: unknown }> }).deadLetters;
  expect(letters.map((l) => [l.messageId, l.reason])).toEqual([
    ['m-ghost', 'TaskNotFoundError'],
    ['m-shape', 'MalformedMessageError'],
    ['m-text', 'MalformedMessageError'],
  ]);
  expect(letters[2]?.body).toBe('{not json');
});

test('control routes: cancel answers 200 with the job, a second cancel 409; events list every transition', async () => {
  const submitted = await call(submitJobHandler, 'POST', 'jobs/hello_world', { body: JSON.stringify({ n: 4 }), params: { jobType: 'hello_world' } });
  const { jobId } = submitted.body as JobJson;
  const cancel = () => call(controlJobHandler, 'POST', `jobs/${jobId}/cancel`, { params: { jobId, action: 'cancel' } });
  expect((await cancel()).body).toMatchObject({ jobId, status: 'CANCELLED' });
  const again = await cancel();
  expect(again.status).toBe(409);
  expect(again.body).toMatchObject({ error: { type: 'InvalidTransitionError', message: expect.stringContaining('CANCELLED → CANCELLED') as string } });
  const resume = await call(controlJobHandler, 'POST', `jobs/${jobId}/resume`, { params: { jobId, action: 'resume' } });
  expect(resume.status).toBe(409);
  const missing = 'e'.repeat(64);
  const unknown = await call(controlJobHandler, 'POST', `jobs/${missing}/pause`, { params: { jobId: missing, action: 'pause' } });
  expect(unknown.status).toBe(404);
  const malformed = await call(controlJobHandler, 'POST', 'jobs/nope/pause', { params: { jobId: 'nope', action: 'pause' } });
  expect(malformed.status).toBe(400);
  expect(malformed.body).toMatchObject({ error: { type: 'ValidationError', issues: [{ path: ['jobId'] }] } });
  const events = await call(listEventsHandler, 'GET', `jobs/${jobId}/events`, { params: { jobId } });
  expect(
    (events.body as { events: Array<{ entity: string; from: string | null; to: string }> }).events.map((e) => `${e.entity}:${e.from ?? '∅'}→${e.to}`),
  ).toEqual(['job:∅→QUEUED', 'job:QUEUED→CANCELLED']);
  // The message already queued for the cancelled job is acknowledged without work.
  const [late] = h.transport.jobs.receive(1);
  await expect(jobMessageHandler(late?.body, invocation({ messageId: late?.messageId }))).resolves.toBeUndefined();
  expect(invocationLogs.some((line) => line.includes('"kind":"ignored"') && line.includes('job is CANCELLED'))).toBe(true);
  expect((await h.machine.listTasks(jobId)).length).toBe(0);
});

test('a job submitted as a Service Bus message runs to COMPLETED; an invalid one is recorded with its issues and stores nothing', async () => {
  await submissionHandler({ jobType: 'hello_world', parameters: { n: 3 } }, invocation({ messageId: 'sub-ok' }));
  const accepted = invocationLogs.find((line) => line.includes('coremachine.submission.accepted'));
  const jobId = /"jobId":"([0-9a-f]{64})"/.exec(accepted ?? '')?.[1] ?? '';
  await driveToEnd(jobId);
  expect((await call(getJobHandler, 'GET', `jobs/${jobId}`, { params: { jobId } })).body).toMatchObject({ status: 'COMPLETED', result: { replies: 3 } });

  const before = ((await call(listJobsHandler, 'GET', 'jobs')).body as { jobs: unknown[] }).jobs.length;
  await expect(submissionHandler(JSON.stringify({ jobType: 'hello_world', parameters: {} }), invocation({ messageId: 'sub-bad' }))).resolves.toBeUndefined();
  expect(((await call(listJobsHandler, 'GET', 'jobs')).body as { jobs: unknown[] }).jobs.length).toBe(before);
  const letters = (await call(listDeadLettersHandler, 'GET', 'dead-letters')).body as {
    deadLetters: Array<{ messageId: string; reason: string; description: string; queue: string }>;
  };
  expect(letters.deadLetters[0]).toMatchObject({ messageId: 'sub-bad', reason: 'ValidationError', queue: 'coremachine-submissions' });
  expect(letters.deadLetters[0]?.description).toContain('→ at n');
});

test('the dead-letter trigger fails what a dead-lettered message pointed at', async () => {
  const submitted = await call(submitJobHandler, 'POST', 'jobs/hello_world', { body: JSON.stringify({ n: 2 }), params: { jobType: 'hello_world' } });
  const { jobId } = submitted.body as JobJson;
  const [message] = h.transport.jobs.receive(1);
  await deadLetterHandler('coremachine-jobs')(
    message?.body,
    invocation({ messageId: message?.messageId, deadLetterReason: 'MaxDeliveryCountExceeded', deadLetterErrorDescription: 'delivered 10 times' }),
  );
  const job = await call(getJobHandler, 'GET', `jobs/${jobId}`, { params: { jobId } });
  expect(job.body).toMatchObject({
    status: 'FAILED',
    error: { type: 'DeadLetteredError', message: 'message dead-lettered: MaxDeliveryCountExceeded: delivered 10 times', stage: 1 },
  });
});

test('a job message that cannot succeed is discarded with its reason; other failures are rethrown for redelivery', async () => {
  await expect(jobMessageHandler('not json at all', invocation({ messageId: 'j-text', deliveryCount: 1 }))).resolves.toBeUndefined();
  await expect(jobMessageHandler({ jobId: 'x' }, invocation({ messageId: 'j-shape', deliveryCount: 1 }))).resolves.toBeUndefined();
  const discarded = invocationLogs.filter((line) => line.startsWith('error') && line.includes('coremachine.message.discarded'));
  expect(discarded.map((line) => /"messageId":"([^"]+)"/.exec(line)?.[1])).toEqual(['j-text', 'j-shape']);
  expect(discarded[1]).toContain('"body":"{\\"jobId\\":\\"x\\"}"');

  jest.spyOn(h.machine, 'processJobMessage').mockRejectedValueOnce(new Error('connection reset'));
  await expect(jobMessageHandler({ jobId: 'a', jobType: 'hello_world', stage: 1 }, invocation({ messageId: 'j-retry' }))).rejects.toThrow('connection reset');
  jest.spyOn(h.machine, 'processTaskMessages').mockRejectedValueOnce(new Error('connection reset'));
  await expect(taskMessagesHandler([{ taskId: 't' }], invocation({ messageIdArray: ['t-retry'] }))).rejects.toThrow('connection reset');
  expect(invocationLogs.filter((line) => line.includes('coremachine.message.retry'))).toHaveLength(2);
});

test('a transient database fault reschedules a copy of the message through the transport instead of abandoning it', async () => {
  const tooMany = () => Object.assign(new Error('sorry, too many clients already'), { code: '53300' });
  jest.spyOn(h.machine, 'processJobMessage').mockRejectedValueOnce(tooMany());
  const body = { jobId: 'a', jobType: 'hello_world', stage: 1 };
  await expect(jobMessageHandler(body, invocation({ messageId: 'j-busy', deliveryCount: 9, applicationProperties: { jobId: 'a' } }))).resolves.toBeUndefined();
  jest.spyOn(h.machine, 'processTaskMessages').mockRejectedValueOnce(tooMany());
  const task = { taskId: 't', jobId: 'a', stage: 1, taskType: 'hello_world.greet', attempt: 1 };
  await expect(
    taskMessagesHandler(
      [task],
      invocation({ messageIdArray: ['t-busy~r2'], deliveryCountArray: [1], applicationPropertiesArray: [{ coremachineReschedules: 2 }] }),
    ),
  ).resolves.toBeUndefined();
  expect(invocationLogs.filter((line) => line.includes('coremachine.message.rescheduled'))).toHaveLength(2);
  expect(invocationLogs.some((line) => line.includes('coremachine.message.retry'))).toBe(false);
  // The copies arrive later, under new messageIds (duplicate detection would drop the old ones), counting their reschedules.
  const deadline = Date.now() + 10_000;
  const copies: Array<{ messageId: string; body: unknown; applicationProperties?: Record<string, unknown> }> = [];
  while (copies.length < 2 && Date.now() < deadline) {
    copies.push(...h.transport.jobs.receive(1), ...h.transport.tasks.receive(1));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(copies.map((copy) => [copy.messageId, copy.body, copy.applicationProperties?.coremachineReschedules]).sort()).toEqual([
    ['j-busy~r1', body, 1],
    ['t-busy~r3', task, 3],
  ]);
});

test('the app context needs DATABASE_URL and a transport, and fails loudly without them', async () => {
  setAppContext(undefined);
  await expect(createAppContext({})).rejects.toThrow(/DATABASE_URL/);
  await expect(getAppContext({ DATABASE_URL: db.url })).rejects.toThrow(
    /Service Bus is not configured: set ServiceBusConnection .* or ServiceBusConnection__fullyQualifiedNamespace/,
  );
  // A failed start is not cached: once a transport is configured, the next call succeeds.
  setTransportFactory(() => new InProcessTransport());
  const context = await getAppContext({ DATABASE_URL: db.url, LOG_LEVEL: 'silent' });
  try {
    expect(context.transport.name).toBe('in-process');
    expect(await getAppContext()).toBe(context);
    const { job, created } = await context.machine.submitJob('hello_world', { n: 1 });
    expect(created).toBe(true);
    await driveToEnd(job.jobId, context.machine, context.transport as InProcessTransport);
    expect((await context.machine.getJob(job.jobId)).status).toBe('COMPLETED');
  } finally {
    await context.pool.end();
    await context.transport.close();
  }
});
