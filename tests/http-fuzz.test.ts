import fc from 'fast-check';
import { ClaimRequest, CompleteRequest, FailRequest, HeartbeatRequest } from '../core/engine/remote-workers';
import { setAppContext } from '../functions/app-context';
import { healthHandler } from '../functions/http-health';
import { httpRoutes } from '../functions/routes';
import { shippedJobs } from './support/registry';
import { ListDeadLettersQuery, ListEventsQuery, ListJobsQuery, ListTasksQuery } from '../models/api';
import { captureLogger, startHarness, stuckJobs, type Harness } from './support/harness';
import { call, ErrorReply, type Handler } from './support/http-invoke';
import { createTestDatabase, type TestDatabase } from './support/test-database';

/** Fixed, so a failure replays exactly; bounded per route in runs and in time. */
const SEED = 20_261_130;
const RUNS_PER_ROUTE = 200;
const TIME_PER_ROUTE_MS = 1_500;

let db: TestDatabase;
let h: Harness;

beforeAll(async () => {
  db = await createTestDatabase();
  h = await startHarness(db.pool, { worker: false });
  setAppContext({ machine: h.machine, pool: db.pool, transport: h.transport, logger: captureLogger(h.logs) });
});
afterAll(async () => {
  setAppContext(undefined);
  await h.stop();
  await db.drop();
});

// One "character" of hostile text: mostly ordinary, often NUL, a lone surrogate or a quoting character.
const hostileChar = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)) },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '%', '\\', '"', '/', '\n') },
);
const specialStrings = [
  '',
  '\u0000',
  '\ud800',
  '\udfff',
  '%',
  '%00',
  '%E0%A4%A',
  '..',
  '../..',
  '1e30',
  '99999999999',
  '-1',
  '0',
  '1.5',
  '9007199254740993',
  'NaN',
  'Infinity',
  '0x10',
  ' 1',
  'null',
  '[]',
  '{}',
  'x'.repeat(300),
  '😀',
  'hello_world',
];
const hostileString = fc.oneof(fc.string({ unit: hostileChar, maxLength: 40 }), fc.constantFrom(...specialStrings));
const hostileNumber = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, 2 ** 53, 1e15, 1e30, -1, 0, 2 ** 31, -(2 ** 31) - 1, 0.5),
);
const { value: hostileJson } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 5 },
    hostileString,
    hostileNumber,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(hostileString, tie('value'), { maxKeys: 4 }),
  ),
}));

// Bodies shaped like the real ones (keys from the schemas, not copied by hand) with hostile values.
const bodyKeys = [ClaimRequest, HeartbeatRequest, CompleteRequest, FailRequest].flatMap((schema) => Object.keys(schema.shape));
const jobParameterKeys = shippedJobs.flatMap((job) => ('shape' in job.parameters ? Object.keys((job.parameters as unknown as { shape: object }).shape) : []));
const shapedBody = fc.dictionary(
  fc.constantFrom(...bodyKeys, ...jobParameterKeys),
  fc.oneof(hostileJson, fc.uuid(), fc.record({ type: hostileString, message: hostileString }), fc.array(hostileString, { maxLength: 3 })),
  { maxKeys: 5 },
);
// Every worker field at once, well-typed or nearly (the schemas strip what a route does not read),
// so the fuzzer gets past the first check and reaches the task lookup and the bounds.
const workerBody = fc.record({
  claimId: fc.uuid(),
  workerId: hostileString,
  taskTypes: fc.array(hostileString, { minLength: 1, maxLength: 3 }),
  maxTasks: fc.oneof(fc.integer({ min: 1, max: 100 }), hostileNumber),
  leaseSeconds: fc.oneof(fc.integer({ min: 5, max: 3600 }), hostileNumber),
  result: hostileJson,
  error: fc.record({ type: hostileString, message: hostileString }),
  retryable: fc.boolean(),
  retryAfterMs: hostileNumber,
});
const bodyText = fc.oneof(
  { weight: 2, arbitrary: workerBody.map((body) => JSON.stringify(body)) },
  { weight: 3, arbitrary: shapedBody.map((body) => JSON.stringify(body)) },
  { weight: 3, arbitrary: hostileJson.map((body) => JSON.stringify(body) ?? 'null') },
  { weight: 1, arbitrary: fc.string({ unit: hostileChar, maxLength: 60 }) },
  { weight: 1, arbitrary: fc.integer({ min: 50, max: 60_000 }).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`) },
  { weight: 1, arbitrary: fc.integer({ min: 50, max: 20_000 }).map((depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('1e400', '-1e400', '123456789012345678901234567890', '{"n":1e400}', '{"n":"\\u0000"}', '"\\ud800"', '{"\\u0000":1}'),
  },
);
const body = fc.option(fc.oneof({ weight: 5, arbitrary: bodyText }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) }), { nil: undefined });

const queryKeys = [ListJobsQuery, ListTasksQuery, ListEventsQuery, ListDeadLettersQuery].flatMap((schema) => Object.keys(schema.shape));
const query = fc.dictionary(fc.oneof(fc.constantFrom(...queryKeys), hostileString), fc.oneof(hostileString, hostileNumber.map(String)), { maxKeys: 5 });
const headers = fc.dictionary(
  fc.constantFrom('content-length', 'content-type'),
  fc.constantFrom('-1', 'abc', '999999999', '0', '1e3', 'text/plain', 'application/json'),
  { maxKeys: 2 },
);

const jobId = fc.stringMatching(/^[0-9a-f]{64}$/);
const jobTypes = shippedJobs.map((job) => job.type);

/** Values for one path parameter: hostile text, well-formed ids, and what the template's regex allows. */
function paramArbitrary(constraint: string | undefined): fc.Arbitrary<string> {
  const allowed = /regex\(\^\(([^)]*)\)\$\)/.exec(constraint ?? '')?.[1]?.split('|') ?? [];
  return fc.oneof(
    hostileString,
    jobId,
    fc.tuple(jobId, fc.nat(), fc.nat()).map(([id, stage, index]) => `${id}-s${stage}-t${index}`),
    fc.constantFrom(...jobTypes, ...(allowed.length > 0 ? allowed : ['x'])),
  );
}

/** `{name}` and `{name:constraint}` segments of a Functions route template. */
function templateParams(route: string): Array<[string, string | undefined]> {
  return [...route.matchAll(/\{(\w+)(?::([^}]*))?\}/g)].map((match) => [match[1] ?? '', match[2]]);
}

const cases = httpRoutes.flatMap((route) =>
  route.methods.map((method) => ({ name: route.name, route: route.route, method, handler: route.handler as Handler })),
);

test('the route table is what the fuzzer covers', () => {
  expect(cases.map((c) => c.name)).toEqual(httpRoutes.map((route) => route.name));
  expect(cases.length).toBeGreaterThanOrEqual(14);
});

test.each(cases)(
  '$method $route ($name): hostile paths, queries and bodies never give a 5xx; every 4xx is the JSON error shape',
  async ({ route, method, handler }) => {
    const params = fc.record(Object.fromEntries(templateParams(route).map(([name, constraint]) => [name, paramArbitrary(constraint)])));
    const statuses = new Map<number, number>();
    await fc.assert(
      // The host discards a GET body (and @azure/functions warns about each one): only POSTs get one.
      fc.asyncProperty(params, query, method === 'POST' ? body : fc.constant(undefined), headers, async (p, q, b, hd) => {
        const reply = await call(handler, method, route, { params: p, query: q, headers: hd, ...(b === undefined ? {} : { body: b }) });
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
        if (reply.status >= 500) throw new Error(`${reply.status}: ${JSON.stringify(reply.body)}`);
        if (reply.status >= 400) {
          const shape = ErrorReply.safeParse(reply.body);
          if (!shape.success) throw new Error(`${reply.status} without the error shape: ${JSON.stringify(reply.body)}`);
        }
      }),
      { seed: SEED, numRuns: RUNS_PER_ROUTE, interruptAfterTimeLimit: TIME_PER_ROUTE_MS, markInterruptAsFailure: false, endOnFailure: true },
    );
    const runs = [...statuses.values()].reduce((sum, n) => sum + n, 0);
    expect(runs).toBeGreaterThan(0);
    // A route that reads input must have refused some of what it was thrown.
    if (templateParams(route).length > 0 || method === 'POST' || route === 'jobs' || route === 'dead-letters')
      expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
  },
);

test('afterwards the app is healthy; any job the fuzzer happened to create is cancelled, so none is left running', async () => {
  const running = await stuckJobs(db.pool);
  for (const job of running) await h.machine.cancelJob(job.job_id);
  expect((await call(healthHandler, 'GET', 'health')).status).toBe(200);
  expect(await stuckJobs(db.pool)).toEqual([]);
});
