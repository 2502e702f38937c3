/**
 * Issue 13, part 1: global concurrency and rate limits of task types, enforced at claim time in
 * PostgreSQL across every engine instance and remote worker. Handlers record what runs into a
 * table (a row per running handler, and the count each one saw when it started): the maximum seen
 * is the concurrency that really happened, whichever instance ran the handler.
 */
import type pg from 'pg';
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { DuplicateRegistrationError } from '../core/errors';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { defineJob, defineRemoteTask, defineTask } from '../models';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { startLimitsCluster } from './support/limits-cluster';

const db = useTestDatabase();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  await db.pool.query('CREATE TABLE public.probe_running (task_id text PRIMARY KEY, scope text NOT NULL)');
  await db.pool.query('CREATE TABLE public.probe_seen (scope text NOT NULL, running int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())');
});
beforeEach(async () => {
  await db.pool.query('TRUNCATE public.probe_running, public.probe_seen');
});

/** A handler's start: its row in, then how many rows of its scope it sees (itself included). */
async function probeStart(pool: pg.Pool, scopes: readonly string[], taskId: string): Promise<void> {
  for (const scope of scopes) {
    await pool.query('INSERT INTO public.probe_running (task_id, scope) VALUES ($1, $2)', [`${taskId}/${scope}`, scope]);
    await pool.query('INSERT INTO public.probe_seen (scope, running) SELECT $1, count(*) FROM public.probe_running WHERE scope = $1', [scope]);
  }
}

async function probeEnd(pool: pg.Pool, scopes: readonly string[], taskId: string): Promise<void> {
  for (const scope of scopes) await pool.query('DELETE FROM public.probe_running WHERE task_id = $1', [`${taskId}/${scope}`]);
}

async function maxSeen(scope: string): Promise<number> {
  return (await db.pool.query<{ n: number | null }>('SELECT max(running)::int AS n FROM public.probe_seen WHERE scope = $1', [scope])).rows[0]?.n ?? 0;
}

async function count(sql: string, values: unknown[] = []): Promise<number> {
  return (await db.pool.query<{ n: number }>(sql, values)).rows[0]?.n ?? 0;
}

test('300 tasks, limit 5 shared by a queue task type and a remote one: 4 instances and remote workers never run more than 5 at once, and both jobs complete', async () => {
  const probe = db.pool;
  const concurrency = { limit: 5, scope: 'downstream' };
  const local = defineTask({
    type: 'limits.local',
    parameters: z.object({ i: z.number().int() }),
    concurrency,
    handler: async ({ i }, ctx) => {
      await probeStart(probe, ['downstream'], ctx.taskId);
      await sleep(5 + (i % 7));
      await probeEnd(probe, ['downstream'], ctx.taskId);
      return i;
    },
  });
  const remote = defineRemoteTask({ type: 'limits.remote', parameters: z.object({ i: z.number().int() }), result: z.number().int(), concurrency });
  const localJob = defineJob({ type: 'limits.local_job', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: local, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const remoteJob = defineJob({ type: 'limits.remote_job', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: remote, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);

  const cluster = await startLimitsCluster(db.url, [localJob, remoteJob], 4);
  try {
    const started = Date.now();
    const [a, b] = await Promise.all([
      cluster.machines[0]!.submitJob('limits.local_job', { n: 240 }),
      cluster.machines[1]!.submitJob('limits.remote_job', { n: 60 }),
    ]);
    // Three remote workers poll through different instances, as HTTP claims would land.
    let remoteDone = 0;
    const remoteWorker = async (w: number) => {
      const machine = cluster.machines[w % cluster.machines.length]!;
      while (remoteDone < 60 && Date.now() - started < 60_000) {
        const claimed = await machine.remote.claim({ workerId: `remote-${w}`, taskTypes: ['limits.remote'], maxTasks: 3 });
        if (claimed.length === 0) await sleep(5);
        await Promise.all(
          claimed.map(async (task) => {
            await probeStart(probe, ['downstream'], task.taskId);
            await sleep(8);
            await probeEnd(probe, ['downstream'], task.taskId);
            await machine.remote.complete(task.taskId, { claimId: task.claimId, result: (task.parameters as { i: number }).i });
            remoteDone++;
          }),
        );
      }
    };
    await Promise.all([0, 1, 2].map(remoteWorker));
    const [doneA, doneB] = await Promise.all([waitForJob(cluster.machines[2]!, a.job.jobId, 60_000), waitForJob(cluster.machines[3]!, b.job.jobId, 60_000)]);
    await Promise.all(cluster.workers.map((worker) => worker.drain()));

    expect([doneA.status, doneA.result, doneB.status, doneB.result]).toEqual(['COMPLETED', 240, 'COMPLETED', 60]);
    const peak = await maxSeen('downstream');
    expect(peak).toBeLessThanOrEqual(5);
    expect(peak).toBeGreaterThanOrEqual(3); // the limit was pressed against, not merely never reached
    // A deferral is not an attempt: every task ran once, none failed, nothing was dead-lettered.
    expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE status <> 'COMPLETED' OR attempt <> 1")).toBe(0);
    expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE limit_key = 'downstream:'")).toBe(300);
    expect(await count('SELECT count(*)::int AS n FROM coremachine.dead_letters')).toBe(0);
    expect(cluster.transport.tasks.deadLetters).toHaveLength(0);
    const deferrals = cluster.logs.filter((line) => line.includes('message deferred by a limit')).length;
    expect(deferrals).toBeGreaterThan(0);
    console.log(JSON.stringify({ tasks: 300, limit: 5, peak, deferrals, elapsedMs: Date.now() - started }));
  } finally {
    await cluster.stop();
  }
}, 90_000);

test('a crash with slots held: nothing else starts until the janitor requeues the lost leases, then the job completes', async () => {
  const hung = new Set<string>();
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  let firstAttempts = 0;
  const work = defineTask({
    type: 'limits.crashy',
    parameters: z.object({ i: z.number().int() }),
    concurrency: { limit: 2 },
    retry: { maxAttempts: 2, initialDelayMs: 1 },
    leaseSeconds: 60,
    handler: async ({ i }, ctx) => {
      // The first two attempts to start belong to the instance that "crashes": they never return.
      if (ctx.attempt === 1 && firstAttempts++ < 2) {
        hung.add(ctx.taskId);
        await released;
        throw new Error('the crashed instance woke up');
      }
      return i;
    },
  });
  const job = defineJob({ type: 'limits.crashy_job', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).reduce((sum: number, v) => sum + v, 0));
  // One message per batch: a batch is settled when all its handlers return, so a deferred message
  // sharing a batch with a hung handler would wait with it (a real crash frees it: its lock expires).
  const cluster = await startLimitsCluster(db.url, [job], 2, 1);
  try {
    const { job: submitted } = await cluster.machines[0]!.submitJob('limits.crashy_job', { n: 10 });
    for (let i = 0; i < 500 && hung.size < 2; i++) await sleep(10);
    expect(hung.size).toBe(2);
    await sleep(300);
    // Both slots are held by the crashed claims: the other eight tasks are deferred, not run.
    expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE status = 'PROCESSING' AND limit_key = 'limits.crashy:'")).toBe(2);
    expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE status = 'COMPLETED' AND job_id = $1", [submitted.jobId])).toBe(0);

    // The process is gone: its leases run out (backdated, as graphile-worker's tests do).
    await db.pool.query("UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second' WHERE status = 'PROCESSING' AND job_id = $1", [
      submitted.jobId,
    ]);
    const report = await cluster.machines[1]!.sweep();
    expect(report.requeuedTasks).toBe(2);
    const done = await waitForJob(cluster.machines[1]!, submitted.jobId, 30_000);
    expect(done.status).toBe('COMPLETED');
    expect(done.result).toBe(45);
    // The hung tasks ran again at the same attempt: their host was lost, not their handler.
    const attempts = await db.pool.query<{ task_id: string; attempt: number }>(
      'SELECT task_id, attempt FROM coremachine.tasks WHERE lease_losses > 0 AND job_id = $1 ORDER BY task_id',
      [submitted.jobId],
    );
    expect(attempts.rows).toEqual([...hung].sort().map((taskId) => ({ task_id: taskId, attempt: 1 })));
    expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE status = 'PROCESSING' AND job_id = $1", [submitted.jobId])).toBe(0);
  } finally {
    release();
    await Promise.all(cluster.workers.map((worker) => worker.drain()));
    await cluster.stop();
  }
}, 60_000);

test('cancelling a job frees the slots its running tasks held: the tasks of another job of the type start at once', async () => {
  const work = defineTask({
    type: 'limits.cancellable',
    parameters: z.object({ i: z.number().int(), hold: z.boolean() }),
    concurrency: { limit: 1 },
    handler: async ({ i, hold }, ctx) => {
      if (hold) await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      return i;
    },
  });
  const job = defineJob({ type: 'limits.cancellable_job', parameters: z.object({ n: z.number().int(), hold: z.boolean() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i, hold: parameters.hold })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const cluster = await startLimitsCluster(db.url, [job], 2, 1);
  try {
    const machine = cluster.machines[0]!;
    const holder = (await machine.submitJob('limits.cancellable_job', { n: 1, hold: true })).job.jobId;
    const holding = "SELECT count(*)::int AS n FROM coremachine.tasks WHERE status = 'PROCESSING' AND limit_key = 'limits.cancellable:'";
    for (let i = 0; i < 500 && (await count(holding)) === 0; i++) await sleep(10);
    const waiter = (await machine.submitJob('limits.cancellable_job', { n: 3, hold: false })).job.jobId;
    await sleep(300);
    expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND status = 'COMPLETED'", [waiter])).toBe(0);
    expect(await count(holding)).toBe(1);

    expect((await machine.cancelJob(holder)).status).toBe('CANCELLED');
    const done = await waitForJob(cluster.machines[1]!, waiter, 30_000);
    expect([done.status, done.result]).toEqual(['COMPLETED', 3]);
  } finally {
    await Promise.all(cluster.workers.map((worker) => worker.drain()));
    await cluster.stop();
  }
}, 60_000);

test('per-key limits are independent: each tenant gets its own 2 slots, and two tenants run side by side', async () => {
  const probe = db.pool;
  const work = defineTask({
    type: 'limits.tenant',
    parameters: z.object({ tenant: z.string(), i: z.number().int() }),
    concurrency: { limit: 2, key: ({ tenant }) => tenant },
    handler: async ({ tenant, i }, ctx) => {
      await probeStart(probe, [tenant, 'all'], ctx.taskId);
      await sleep(20);
      await probeEnd(probe, [tenant, 'all'], ctx.taskId);
      return i;
    },
  });
  const job = defineJob({ type: 'limits.tenant_job', parameters: z.object({ n: z.number().int() }) })
    .stage({
      name: 'all',
      task: work,
      fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ tenant: i % 2 === 0 ? 'acme' : 'globex', i })),
    })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const cluster = await startLimitsCluster(db.url, [job], 3);
  try {
    const { job: submitted } = await cluster.machines[0]!.submitJob('limits.tenant_job', { n: 40 });
    const done = await waitForJob(cluster.machines[1]!, submitted.jobId, 60_000);
    expect(done.status).toBe('COMPLETED');
    expect(await maxSeen('acme')).toBe(2);
    expect(await maxSeen('globex')).toBe(2);
    // Were the keys one shared limit of 2, never more than 2 would have run at once.
    expect(await maxSeen('all')).toBeGreaterThan(2);
    expect(await maxSeen('all')).toBeLessThanOrEqual(4);
    const keys = await db.pool.query<{ limit_key: string; n: number }>(
      'SELECT limit_key, count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 GROUP BY limit_key ORDER BY limit_key',
      [submitted.jobId],
    );
    expect(keys.rows).toEqual([
      { limit_key: 'limits.tenant:acme', n: 20 },
      { limit_key: 'limits.tenant:globex', n: 20 },
    ]);
    // The task API (and with it the CLI's tasks table and the dashboard) names each task's slot key.
    const listed = await cluster.machines[0]!.listTasks(submitted.jobId, { stage: 1, afterIndex: -1, limit: 2 });
    expect(listed.map((t) => t.limitKey)).toEqual(['limits.tenant:acme', 'limits.tenant:globex']);
  } finally {
    await cluster.stop();
  }
}, 60_000);

test('a rate limit: starts never outrun a bucket of 20 tokens refilled at 20 per second, across instances', async () => {
  const starts: number[] = [];
  const work = defineTask({
    type: 'limits.rated',
    parameters: z.object({ i: z.number().int() }),
    rate: { perSecond: 20 },
    handler: ({ i }) => {
      starts.push(Date.now());
      return Promise.resolve(i);
    },
  });
  const job = defineJob({ type: 'limits.rated_job', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const cluster = await startLimitsCluster(db.url, [job], 3);
  try {
    const { job: submitted } = await cluster.machines[0]!.submitJob('limits.rated_job', { n: 60 });
    const done = await waitForJob(cluster.machines[1]!, submitted.jobId, 60_000);
    expect(done.status).toBe('COMPLETED');
    starts.sort((x, y) => x - y);
    const span = starts[starts.length - 1]! - starts[0]!;
    // 60 starts with 20 in the bucket: the other 40 need 2 s of refill (10% tolerance for clocks).
    expect(span).toBeGreaterThanOrEqual(1800);
    // In any window of w ms at most 20 + 20·w/1000 starts, within a tolerance of 5 (250 ms of
    // tokens): tokens are granted by the database's clock, starts recorded by the handlers', and a
    // batch granted earlier can start its handlers late, next to the following grant.
    let worst = 0;
    for (let i = 0; i < starts.length; i++) {
      for (let j = i; j < starts.length; j++) {
        const w = starts[j]! - starts[i]!;
        worst = Math.max(worst, j - i + 1 - (20 + Math.floor((20 * w) / 1000)));
      }
    }
    expect(worst).toBeLessThanOrEqual(5);
    console.log(JSON.stringify({ tasks: 60, perSecond: 20, spanMs: span, worstExcess: worst }));

    // The janitor deletes a bucket idle for an hour (it is full again): one row per key in use.
    const bucket = "SELECT count(*)::int AS n FROM coremachine.task_rate_buckets WHERE limit_key = 'limits.rated:'";
    expect(await count(bucket)).toBe(1);
    expect((await cluster.machines[2]!.sweep()).prunedRateBuckets).toBe(0);
    await db.pool.query("UPDATE coremachine.task_rate_buckets SET refilled_at = now() - interval '61 minutes'");
    expect((await cluster.machines[2]!.sweep()).prunedRateBuckets).toBe(1);
    expect(await count(bucket)).toBe(0);
  } finally {
    await cluster.stop();
  }
}, 60_000);

test('limits are checked when a task type is defined and when it is registered; a key function that throws fails the fan-out', async () => {
  const parameters = z.object({ i: z.number().int() });
  const handler = () => Promise.resolve(1);
  expect(() => defineTask({ type: 'limits.bad', parameters, concurrency: { limit: 0 }, handler })).toThrow(/concurrency.limit must be an integer/);
  for (const leaseSeconds of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 2_592_001]) {
    expect(() => defineTask({ type: 'limits.bad', parameters, leaseSeconds, handler })).toThrow(/leaseSeconds must be a number of seconds above 0/);
  }
  expect(() => defineTask({ type: 'limits.bad', parameters, concurrency: { limit: 2.5 }, handler })).toThrow(/concurrency.limit/);
  expect(() => defineTask({ type: 'limits.bad', parameters, rate: { perSecond: 0 }, handler })).toThrow(/rate.perSecond/);
  expect(() => defineTask({ type: 'limits.bad', parameters, rate: { perSecond: 0.0001 }, handler })).toThrow(/rate.perSecond/);
  expect(() => defineTask({ type: 'limits.bad', parameters, concurrency: { limit: 1, scope: 'Bad Scope' }, handler })).toThrow(/scope/);
  // A hand-built definition is checked by the registry too.
  const handBuilt = { ...defineTask({ type: 'limits.hand', parameters, handler }), concurrency: { limit: -1 } };
  expect(() => new Registry().registerTask(handBuilt)).toThrow(/concurrency.limit/);
  // Two task types sharing a scope must agree on its limits.
  const a = defineTask({ type: 'limits.a', parameters, concurrency: { limit: 3, scope: 'db' }, handler });
  const b = defineTask({ type: 'limits.b', parameters, concurrency: { limit: 4, scope: 'db' }, handler });
  expect(() => new Registry().registerTask(a).registerTask(b)).toThrow(DuplicateRegistrationError);

  const keyed = defineTask({
    type: 'limits.keyed',
    parameters,
    concurrency: { limit: 1, key: ({ i }) => (i === 3 ? (undefined as unknown as string) : String(i)) },
    handler,
  });
  const job = defineJob({ type: 'limits.keyed_job', parameters: z.object({}) })
    .stage({ name: 'all', task: keyed, fanOut: () => Array.from({ length: 5 }, (_, i) => ({ i })) })
    .finalize(() => null);
  const cluster = await startLimitsCluster(db.url, [job], 1);
  try {
    const { job: submitted } = await cluster.machines[0]!.submitJob('limits.keyed_job', {});
    const done = await waitForJob(cluster.machines[0]!, submitted.jobId);
    expect(done.status).toBe('FAILED');
    expect(done.error).toMatchObject({
      type: 'FanOutError',
      message: expect.stringMatching(/concurrency.key of task type "limits.keyed" must return a string/) as string,
    });
  } finally {
    await cluster.stop();
  }
});

/**
 * One job of 8 tasks of a type under `limit`, its stage started by hand on one machine (no worker),
 * so a test sends the task messages itself, in batches of its own making.
 */
async function startEightTasks(
  name: string,
  limit: number,
  handler: (i: number, taskId: string) => Promise<number> | number,
): Promise<{ machine: CoreMachine; transport: InProcessTransport; jobId: string; taskIds: string[]; message: (i: number) => Record<string, unknown> }> {
  const work = defineTask({
    type: `limits.${name}`,
    parameters: z.object({ i: z.number().int() }),
    concurrency: { limit },
    handler: ({ i }, ctx) => handler(i, ctx.taskId),
  });
  const job = defineJob({ type: `limits.${name}_job`, parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const transport = new InProcessTransport();
  const machine = await CoreMachine.create({ pool: db.pool, registry: new Registry().register(job), transport, logger: captureLogger([]) });
  const { job: submitted } = await machine.submitJob(`limits.${name}_job`, { n: 8 });
  expect(await machine.processJobMessage({ jobId: submitted.jobId, jobType: `limits.${name}_job`, stage: 1 })).toMatchObject({ kind: 'started' });
  const taskIds = (await machine.listTasks(submitted.jobId, { stage: 1, afterIndex: -1, limit: 8 })).map((task) => task.taskId);
  const message = (i: number) => ({ taskId: taskIds[i], jobId: submitted.jobId, stage: 1, taskType: `limits.${name}`, attempt: 1 });
  return { machine, transport, jobId: submitted.jobId, taskIds, message };
}

test('concurrent batches of one process share a limited claim: the limit holds exactly, a task in two batches runs once, and the rest is deferred', async () => {
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  const started: string[] = [];
  const { machine, transport, jobId, message } = await startEightTasks('shared_claim', 3, async (i, taskId) => {
    started.push(taskId);
    await released;
    return i;
  });
  try {
    // Four batches in flight at once, as a host's concurrent deliveries are; task 0 is in every batch.
    const batches = [
      [message(0), message(1), message(2)],
      [message(0), message(3), message(4)],
      [message(0), message(5)],
      [message(0), message(6), message(7)],
    ];
    const processing = batches.map((bodies) => machine.processTaskMessages(bodies));
    for (let i = 0; i < 500 && started.length < 3; i++) await sleep(10);
    await sleep(100);
    expect(started).toHaveLength(3);
    expect(new Set(started).size).toBe(3);
    expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE status = 'PROCESSING' AND job_id = $1", [jobId])).toBe(3);
    release();
    const outcomes = (await Promise.all(processing)).flat();
    const kinds = outcomes.reduce<Record<string, number>>((tally, outcome) => ({ ...tally, [outcome.kind]: (tally[outcome.kind] ?? 0) + 1 }), {});
    // Three ran; task 0's other three messages are duplicates or deferred (never a second run); the rest waits its turn.
    expect(kinds.completed).toBe(3);
    expect((kinds.deferred ?? 0) + (kinds.duplicate ?? 0)).toBe(outcomes.length - 3);
    expect(kinds.deferred).toBeGreaterThanOrEqual(5);
    expect(outcomes.filter((o) => o.kind === 'deferred').every((o) => 'reason' in o && o.reason === 'all 3 slot(s) of limits.shared_claim: are taken')).toBe(
      true,
    );
    // No worker here sends the deferred messages again: the job is cancelled, not left running.
    expect((await machine.cancelJob(jobId)).status).toBe('CANCELLED');
  } finally {
    release();
    await transport.close();
  }
}, 30_000);

test('a never-binding limit: a task in four batches claimed at once runs once, its other messages are duplicates, each batch gets its own outcomes, and no slot is left held', async () => {
  const runs: number[] = [];
  const { machine, transport, taskIds, message } = await startEightTasks('shared_free', 100, (i) => {
    runs.push(i);
    return i;
  });
  try {
    // Started in one tick, so the process claims the four batches in one call; task 0 leads each batch but the third.
    const batches = [
      [message(0), message(1), message(2)],
      [message(0), message(3), message(4)],
      [message(5), message(0)],
      [message(0), message(6), message(7)],
    ];
    const outcomes = await Promise.all(batches.map((bodies) => machine.processTaskMessages(bodies)));
    // Each batch's outcomes are its own messages', in order: the first message of task 0 (the first batch's) ran it.
    expect(outcomes.map((batch) => batch.map((o) => [o.kind, o.taskId]))).toEqual([
      [
        ['completed', taskIds[0]],
        ['completed', taskIds[1]],
        ['completed', taskIds[2]],
      ],
      [
        ['duplicate', taskIds[0]],
        ['completed', taskIds[3]],
        ['completed', taskIds[4]],
      ],
      [
        ['completed', taskIds[5]],
        ['duplicate', taskIds[0]],
      ],
      [
        ['duplicate', taskIds[0]],
        ['completed', taskIds[6]],
        ['completed', taskIds[7]],
      ],
    ]);
    expect(runs.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(await count('SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies')).toBe(0);
  } finally {
    await transport.close();
  }
});

test('a limited task whose lease ran out is claimed again by its message at the same attempt, in its slot, and runs', async () => {
  const runs: Array<{ taskId: string; attempt: number }> = [];
  let hang = true;
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  const work = defineTask({
    type: 'limits.reclaimed',
    parameters: z.object({ i: z.number().int() }),
    concurrency: { limit: 1 },
    handler: async ({ i }, ctx) => {
      runs.push({ taskId: ctx.taskId, attempt: ctx.attempt });
      if (hang) await released;
      return i;
    },
  });
  const job = defineJob({ type: 'limits.reclaimed_job', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const transport = new InProcessTransport();
  const registry = new Registry().register(job);
  const lost = await CoreMachine.create({ pool: db.pool, registry, transport, logger: captureLogger([]) });
  const next = await CoreMachine.create({ pool: db.newPool(2), registry, transport, logger: captureLogger([]) });
  try {
    const { job: submitted } = await lost.submitJob('limits.reclaimed_job', { n: 2 });
    expect(await lost.processJobMessage({ jobId: submitted.jobId, jobType: 'limits.reclaimed_job', stage: 1 })).toMatchObject({ kind: 'started' });
    const [first, second] = await lost.listTasks(submitted.jobId, { stage: 1, afterIndex: -1, limit: 2 });
    const message = (taskId: string) => ({ taskId, jobId: submitted.jobId, stage: 1, taskType: 'limits.reclaimed', attempt: 1 });
    // The first host claims the first task and hangs in it; then it is gone, and its lease runs out.
    const hung = lost.processTaskMessages([message(first!.taskId)]);
    for (let i = 0; i < 500 && runs.length < 1; i++) await sleep(10);
    await db.pool.query("UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = $1", [first!.taskId]);
    hang = false;
    // Its message comes back to another host together with the second task's: the lost task is taken
    // over in the slot it still holds (not an attempt), the second waits for that slot.
    const outcomes = await next.processTaskMessages([message(first!.taskId), message(second!.taskId)]);
    expect(outcomes.map((o) => o.kind)).toEqual(['completed', 'deferred']);
    expect(runs).toEqual([
      { taskId: first!.taskId, attempt: 1 },
      { taskId: first!.taskId, attempt: 1 },
    ]);
    const row = await db.pool.query<{ status: string; attempt: number; lease_losses: number }>(
      'SELECT status, attempt, lease_losses FROM coremachine.tasks WHERE task_id = $1',
      [first!.taskId],
    );
    expect(row.rows[0]).toEqual({ status: 'COMPLETED', attempt: 1, lease_losses: 1 });
    release();
    expect((await hung).map((o) => o.kind)).toEqual(['fenced']);
    expect((await next.cancelJob(submitted.jobId)).status).toBe('CANCELLED');
  } finally {
    release();
    await transport.close();
  }
}, 30_000);
