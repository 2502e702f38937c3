import { HttpRequest, HttpResponse, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { UnknownRemoteTaskTypeError } from '../core/errors';
import type { RemoteTask } from '../core/engine/remote-workers';
import { WORKER_WRITE_INTERVAL_SECONDS } from '../core/engine/worker-sightings';
import { setAppContext } from '../functions/app-context';
import { claimHandler, listWorkersHandler } from '../functions/http-workers';
import type { WorkerView } from '../models/workers';
import { captureLogger, startHarness, useTestDatabase, waitForJob, type Harness } from './support/harness';

/**
 * The workers view (migration 022): remote workers and in-process hosts with their task types,
 * last claim and heartbeat, and the tasks they hold; a claim of a type no remote worker can ever
 * get is refused; rows are written by time, never per task. Several engines share one database.
 */

const db = useTestDatabase();
const harnesses: Harness[] = [];

/** An engine with its own pool on the shared database, stopped after the test. */
async function engine(options: Parameters<typeof startHarness>[1] = {}): Promise<Harness> {
  const h = await startHarness(db.newPool(4), options);
  harnesses.push(h);
  return h;
}

// The tests share a database: each starts with no worker listed.
beforeEach(async () => {
  await db.pool.query('DELETE FROM coremachine.workers');
});
afterEach(async () => {
  setAppContext(undefined);
  for (const h of harnesses.splice(0)) {
    await h.worker?.drain();
    await h.stop();
  }
});

async function claimAll(h: Harness, workerId: string, expected: number, maxTasks = 10): Promise<RemoteTask[]> {
  const claimed: RemoteTask[] = [];
  // By time, not tries: on a loaded machine the remote stage can take a while to be created.
  for (const deadline = Date.now() + 30_000; claimed.length < expected && Date.now() < deadline;) {
    claimed.push(...(await h.machine.remote.claim({ workerId, taskTypes: ['test.render'], maxTasks: Math.min(maxTasks, expected - claimed.length) })));
    if (claimed.length < expected) await new Promise((r) => setTimeout(r, 10));
  }
  return claimed;
}

async function workersOf(h: Harness, kind: WorkerView['kind']): Promise<WorkerView[]> {
  return (await h.machine.listWorkers()).filter((w) => w.kind === kind);
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function call(handler: (r: HttpRequest, c: InvocationContext) => Promise<HttpResponseInit>, method: 'GET' | 'POST', path: string, body?: unknown) {
  const request = new HttpRequest({ method, url: `http://localhost/api/${path}`, ...(body === undefined ? {} : { body: { string: JSON.stringify(body) } }) });
  const response = new HttpResponse(await handler(request, new InvocationContext()));
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

test('a claim naming a task type that is not registered, or not remote, is refused with 404 and the remote task types; nothing is claimed', async () => {
  const h = await engine();
  setAppContext({ machine: h.machine, pool: db.pool, transport: h.transport, logger: captureLogger(h.logs) });
  const remoteTypes = h.registry.taskTypes('remote');
  expect(remoteTypes).toContain('test.render');
  expect(remoteTypes).not.toContain('test.value');
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 3 });
  const remoteQueued = async () =>
    (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND task_type = 'test.render'", [job.jobId]))
      .rows[0]!.n;
  expect(await until(remoteQueued, (n) => n === 3, 30_000)).toBe(3);

  for (const [taskTypes, reason] of [
    [['test.render', 'test.no_such_type'], '"test.no_such_type" is not registered'],
    [['test.value', 'test.render'], '"test.value" runs from the tasks queue (defineTask), not on remote workers'],
  ] as const) {
    const refused = await h.machine.remote.claim({ workerId: 'gpu-typo', taskTypes, maxTasks: 10 }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(UnknownRemoteTaskTypeError);
    expect((refused as Error).message).toContain(reason);
    expect((refused as Error).message).toContain(`remote task types: ${remoteTypes.join(', ')}`);

    const answer = await call(claimHandler, 'POST', 'workers/claim', { workerId: 'gpu-typo', taskTypes, maxTasks: 10 });
    expect(answer.status).toBe(404);
    expect(answer.body.error).toMatchObject({ type: 'UnknownRemoteTaskTypeError', remoteTaskTypes: remoteTypes });
    expect((answer.body.error as { message: string }).message).toContain(reason);
  }
  // Nothing was claimed, and a refused worker is not listed as one.
  const states = await db.pool.query<{ status: string; n: number }>(
    "SELECT status, count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND task_type = 'test.render' GROUP BY status",
    [job.jobId],
  );
  expect(states.rows).toEqual([{ status: 'QUEUED', n: 3 }]);
  expect(await workersOf(h, 'remote')).toEqual([]);

  const claimed = await claimAll(h, 'gpu-ok', 3);
  for (const task of claimed) await h.machine.remote.complete(task.taskId, { claimId: task.claimId, result: { frame: task.taskIndex, bytes: 1 } });
  expect((await waitForJob(h.machine, job.jobId, 60_000)).status).toBe('COMPLETED');
});

test('a remote worker appears with its task types and the tasks it holds; heartbeats and reports through another engine move its heartbeat', async () => {
  const a = await engine();
  const b = await engine({ worker: false });
  const { job } = await a.machine.submitJob('test.remote_job', { frames: 5 });
  const claimed = await claimAll(a, 'gpu-1', 3, 3);
  expect(claimed).toHaveLength(3);

  setAppContext({ machine: b.machine, pool: db.pool, transport: b.transport, logger: captureLogger(b.logs) });
  const listed = await call(listWorkersHandler, 'GET', 'workers');
  expect(listed.status).toBe(200);
  const gpu = (listed.body.workers as Array<Record<string, unknown>>).find((w) => w.workerId === 'gpu-1');
  expect(gpu).toMatchObject({ kind: 'remote', taskTypes: ['test.render'], host: null, tasksHeld: 3, stale: false });
  expect(gpu?.lastClaimAt).toEqual(gpu?.lastHeartbeatAt);

  // Another instance (its own memory) hears the heartbeat: written once the row is older than the interval.
  await db.pool.query("UPDATE coremachine.workers SET last_heartbeat_at = now() - interval '40 seconds' WHERE worker_id = 'gpu-1'");
  const before = (await workersOf(b, 'remote'))[0]!;
  expect(before.heartbeatAgeSeconds).toBeGreaterThanOrEqual(40);
  expect(before.stale).toBe(false);
  const [first, second, third] = claimed;
  await b.machine.remote.heartbeat(first!.taskId, { claimId: first!.claimId });
  const after = (await workersOf(b, 'remote'))[0]!;
  expect(after.heartbeatAgeSeconds).toBeLessThan(5);
  expect(after.lastClaimAt).toEqual(before.lastClaimAt);

  await b.machine.remote.complete(first!.taskId, { claimId: first!.claimId, result: { frame: first!.taskIndex, bytes: 1 } });
  await b.machine.remote.fail(second!.taskId, { claimId: second!.claimId, error: { message: 'GPU busy' } });
  expect((await workersOf(b, 'remote'))[0]).toMatchObject({ workerId: 'gpu-1', tasksHeld: 1 });

  const rest = [third!, ...(await claimAll(b, 'gpu-2', 3, 3))];
  expect((await workersOf(b, 'remote')).map((w) => [w.workerId, w.tasksHeld])).toEqual([
    ['gpu-1', 1],
    ['gpu-2', 3],
  ]);
  for (const task of rest) await b.machine.remote.complete(task.taskId, { claimId: task.claimId, result: { frame: task.taskIndex, bytes: 1 } });
  expect((await waitForJob(a.machine, job.jobId, 60_000)).status).toBe('COMPLETED');
  expect((await workersOf(b, 'remote')).map((w) => w.tasksHeld)).toEqual([0, 0]);
});

test('two in-process engines on one database are two workers, each holding the tasks it runs; a clean stop removes its row', async () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const a = await engine({ beforeTask: () => gate });
  const b = await engine({ beforeTask: () => gate });
  expect(a.machine.presence.workerId).not.toBe(b.machine.presence.workerId);
  const hosts = await until(
    () => workersOf(a, 'in-process'),
    (w) => w.length === 2,
  );
  expect(hosts.map((w) => w.workerId).sort()).toEqual([a.machine.presence.workerId, b.machine.presence.workerId].sort());
  for (const host of hosts) {
    expect(host).toMatchObject({ host: a.machine.presence.host, tasksHeld: 0, lastClaimAt: null, stale: false });
    expect(host.taskTypes).toEqual(a.registry.taskTypes('queue'));
    expect(host.taskTypes).toContain('test.value');
    expect(host.taskTypes).not.toContain('test.render');
  }

  // Each engine's transport delivers only what that engine sent: a job on each.
  const jobs = [await a.machine.submitJob('test.three_stages', { n: 6, tag: 'a' }), await b.machine.submitJob('test.three_stages', { n: 6, tag: 'b' })];
  const running = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM coremachine.tasks WHERE status = 'PROCESSING'")).rows[0]!.n;
  await until(running, (n) => n === 12, 30_000);
  const held = await workersOf(a, 'in-process');
  expect(held.map((w) => w.tasksHeld)).toEqual([6, 6]);
  release();
  for (const { job } of jobs) expect((await waitForJob(a.machine, job.jobId, 60_000)).status).toBe('COMPLETED');

  // A claim only notes its time in memory: the next beat (every 10 s) writes it, and the heartbeat.
  const beaten = await until(
    () => workersOf(a, 'in-process'),
    (w) => w.every((host) => host.lastClaimAt !== null),
    15_000,
  );
  for (const host of beaten) expect(host.lastHeartbeatAt.getTime()).toBeGreaterThanOrEqual(host.lastClaimAt!.getTime());

  await b.worker!.stop();
  const left = await workersOf(a, 'in-process');
  expect(left.map((w) => w.workerId)).toEqual([a.machine.presence.workerId]);
  expect(left[0]?.tasksHeld).toBe(0);
}, 120_000);

test('a worker not heard from for a minute is shown stale, and the janitor prunes it after the retention window', async () => {
  const h = await engine();
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 1 });
  const [task] = await claimAll(h, 'gpu-old', 1);
  await h.machine.remote.complete(task!.taskId, { claimId: task!.claimId, result: { frame: 0, bytes: 1 } });
  expect((await waitForJob(h.machine, job.jobId, 60_000)).status).toBe('COMPLETED');
  expect((await h.machine.listWorkers()).find((w) => w.workerId === 'gpu-old')).toMatchObject({ stale: false });

  await db.pool.query("UPDATE coremachine.workers SET last_heartbeat_at = now() - interval '61 seconds' WHERE worker_id = 'gpu-old'");
  expect((await h.machine.listWorkers()).find((w) => w.workerId === 'gpu-old')).toMatchObject({ stale: true });
  expect((await h.machine.sweep()).prunedWorkers).toBe(0);

  await db.pool.query("UPDATE coremachine.workers SET last_heartbeat_at = now() - interval '2 hours' WHERE worker_id = 'gpu-old'");
  expect((await h.machine.sweep()).prunedWorkers).toBe(1);
  expect((await h.machine.listWorkers()).find((w) => w.workerId === 'gpu-old')).toBeUndefined();
  // The live host is kept.
  expect((await h.machine.listWorkers()).map((w) => w.workerId)).toEqual([h.machine.presence.workerId]);
});

test('writes to the workers table are bounded by time, not by tasks: a job of 500 queue and 500 remote tasks', async () => {
  // Every insert and update of a worker row, counted by the database itself.
  await db.pool.query(`CREATE TABLE IF NOT EXISTS public.worker_writes (n int NOT NULL DEFAULT 0);
    DELETE FROM public.worker_writes; INSERT INTO public.worker_writes VALUES (0);
    CREATE OR REPLACE FUNCTION public.count_worker_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN UPDATE public.worker_writes SET n = n + 1; RETURN NULL; END $$;
    DROP TRIGGER IF EXISTS count_worker_writes ON coremachine.workers;
    CREATE TRIGGER count_worker_writes AFTER INSERT OR UPDATE ON coremachine.workers FOR EACH ROW EXECUTE FUNCTION public.count_worker_write();`);
  const writes = async () => (await db.pool.query<{ n: number }>('SELECT n FROM public.worker_writes')).rows[0]!.n;
  try {
    const started = Date.now();
    const h = await engine();
    const { job } = await h.machine.submitJob('test.remote_job', { frames: 500 });
    // One task per claim and a report each: 1,000 requests from one remote worker.
    let done = 0;
    while (done < 500) {
      const [task] = await h.machine.remote.claim({ workerId: 'gpu-busy', taskTypes: ['test.render'], maxTasks: 1 });
      if (!task) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      await h.machine.remote.complete(task.taskId, { claimId: task.claimId, result: { frame: task.taskIndex, bytes: 1 } });
      done++;
    }
    expect((await waitForJob(h.machine, job.jobId, 60_000)).status).toBe('COMPLETED');
    const elapsedSeconds = (Date.now() - started) / 1000;
    const counted = await writes();
    // The host: a first beat and one per 10 s. The remote worker: a claim and a heartbeat per interval at most.
    const bound = 2 + Math.ceil(elapsedSeconds / 10) + 2 * (1 + Math.ceil(elapsedSeconds / WORKER_WRITE_INTERVAL_SECONDS));
    expect(counted).toBeGreaterThanOrEqual(2);
    expect(counted).toBeLessThanOrEqual(bound);
    expect(await h.machine.listWorkers()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ workerId: 'gpu-busy', tasksHeld: 0 }),
        expect.objectContaining({ workerId: h.machine.presence.workerId, kind: 'in-process' }),
      ]),
    );
  } finally {
    await db.pool.query('DROP TRIGGER IF EXISTS count_worker_writes ON coremachine.workers');
  }
}, 180_000);
