import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import { setAppContext } from '../functions/app-context';
import { listEventsHandler } from '../functions/http-control';
import { captureLogger, startHarness, useTestDatabase, type Harness } from './support/harness';

// The dashboard's event trail reads a job's events from the newest end. A 30,000-event job once
// showed "200 of 5000" from the middle, without the cancellation at the end: these tests pin the
// API that fixes it (order=desc, beforeId) and its validation.
const db = useTestDatabase();
const TASK_EVENTS = 30_000;
let h: Harness;
let jobId: string;

interface EventJson {
  id: number;
  entity: string;
  from: string | null;
  to: string;
}

async function events(query: Record<string, string>): Promise<{ status: number; body: { events: EventJson[]; error?: { type: string; issues?: unknown[] } } }> {
  const request = new HttpRequest({ method: 'GET', url: `http://localhost:7071/api/jobs/${jobId}/events`, params: { jobId }, query });
  const response = new HttpResponse(await listEventsHandler(request, new InvocationContext({ invocationId: 'test', functionName: 'jobs-events' })));
  return { status: response.status, body: (await response.json()) as { events: EventJson[] } };
}

beforeAll(async () => {
  h = await startHarness(db.pool, { worker: false });
  setAppContext({ machine: h.machine, pool: db.pool, transport: h.transport, logger: captureLogger(h.logs) });
  ({
    job: { jobId },
  } = await h.machine.submitJob('hello_world', { n: 3 }));
  // A long trail without running 10,000 tasks: rows like the task trigger writes, then a real cancel.
  await db.pool.query(
    `INSERT INTO coremachine.events (job_id, entity, stage, task_id, from_status, to_status, attempt)
     SELECT $1, 'task', 1, $1 || '-s1-t' || g, 'QUEUED', 'PROCESSING', 1 FROM generate_series(0, $2 - 1) g`,
    [jobId, TASK_EVENTS],
  );
  await h.machine.cancelJob(jobId);
});

afterAll(async () => {
  setAppContext(undefined);
  await h.stop();
});

test('order=desc starts at the newest event: the cancellation of a 30,000-event job comes first', async () => {
  const { status, body } = await events({ order: 'desc', limit: '200' });
  expect(status).toBe(200);
  expect(body.events).toHaveLength(200);
  expect(body.events[0]).toMatchObject({ entity: 'job', from: 'QUEUED', to: 'CANCELLED' });
  const ids = body.events.map((e) => e.id);
  expect(ids).toEqual([...ids].sort((a, b) => b - a));
  // The default stays oldest first from afterId, as the CLI and existing clients read it.
  const ascending = await events({ limit: '2' });
  expect(ascending.body.events.map((e) => `${e.entity}:${e.to}`)).toEqual(['job:QUEUED', 'task:PROCESSING']);
});

test('beforeId pages back from the newest end to the first event with no gap and no repeat', async () => {
  const seen: number[] = [];
  let beforeId: number | undefined;
  for (let pages = 0; pages < 20; pages++) {
    const { body } = await events({ order: 'desc', limit: '5000', ...(beforeId ? { beforeId: String(beforeId) } : {}) });
    seen.push(...body.events.map((e) => e.id));
    if (body.events.length < 5000) break;
    beforeId = body.events[body.events.length - 1]?.id;
  }
  // job ∅→QUEUED, 30,000 task rows, job QUEUED→CANCELLED.
  expect(seen).toHaveLength(TASK_EVENTS + 2);
  expect(new Set(seen).size).toBe(seen.length);
  expect(seen.every((id, i) => i === 0 || id < (seen[i - 1] ?? 0))).toBe(true);
  const newest = seen[0] ?? 0;
  // afterId and beforeId together: a window, in either order.
  const window = await events({ afterId: String(newest - 5), beforeId: String(newest), order: 'desc' });
  expect(window.body.events.map((e) => e.id)).toEqual([newest - 1, newest - 2, newest - 3, newest - 4]);
});

test.each([
  ['limit', '0'],
  ['limit', '5001'],
  ['limit', 'ten'],
  ['beforeId', '0'],
  ['beforeId', '-3'],
  ['beforeId', '1.5'],
  ['beforeId', '9007199254740993'],
  ['afterId', '-1'],
  ['order', 'sideways'],
])('%s=%s is a 400 with the zod issue, never a 500', async (name, value) => {
  const { status, body } = await events({ [name]: value });
  expect(status).toBe(400);
  expect(body.error?.type).toBe('ValidationError');
  expect(JSON.stringify(body.error?.issues)).toContain(name);
});
