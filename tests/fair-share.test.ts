/**
 * Priorities and fair share at claim (core/engine/fair-share.ts, 023_fair_share.sql), with several
 * engine instances on one database and one transport, as Functions instances share a namespace.
 * The claim decides which ready task a message runs: a tenant whose 100 tasks arrive behind another
 * tenant's 100,000 messages is served by those messages, a high-priority job before a low one, and
 * a heavier key gets more of the running slots.
 */
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { shareSlots } from '../core/engine/fair-share';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { ValidationError } from '../core/errors';
import { defineJob, defineTask, type JobView } from '../models';
import { captureLogger, useTestDatabase } from './support/harness';

jest.setTimeout(240_000);

const db = useTestDatabase();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Which job's handler started, in order: the claims' decisions as they happened. */
const started: string[] = [];

const work = defineTask({
  type: 'fair.work',
  parameters: z.object({ tag: z.string(), ms: z.number().int() }),
  handler: async ({ tag, ms }) => {
    started.push(tag);
    await sleep(ms);
    return 1;
  },
});
const job = defineJob({ type: 'fair.job', parameters: z.object({ tag: z.string(), n: z.number().int().min(1), ms: z.number().int() }) })
  .stage({ name: 'work', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, () => ({ tag: parameters.tag, ms: parameters.ms })) })
  .finalize(async ({ previous }) => (await previous.all()).length);

interface Cluster {
  machines: CoreMachine[];
  stop(): Promise<void>;
}

async function startCluster(
  instances: number,
  slots: { taskBatchSize: number; taskConcurrency: number } = { taskBatchSize: 8, taskConcurrency: 2 },
): Promise<Cluster> {
  const registry = new Registry().register(job);
  const transport = new InProcessTransport({ lockDurationMs: 60_000, maxDeliveryCount: 10 });
  const logger = captureLogger([]);
  const machines = await Promise.all(Array.from({ length: instances }, () => CoreMachine.create({ pool: db.newPool(6), registry, transport, logger })));
  const workers = machines.map((machine) => new InProcessWorker(machine, transport, logger, { ...slots, jobConcurrency: 2 }));
  return {
    machines,
    stop: async () => {
      await Promise.all(workers.map((worker) => worker.stop()));
      await transport.close();
    },
  };
}

async function until(machine: CoreMachine, jobId: string, done: (job: JobView) => boolean, timeoutMs: number): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = await machine.getJob(jobId);
    if (done(view) || Date.now() > deadline) return view;
    await sleep(10);
  }
}

const ended = (view: JobView) => !['QUEUED', 'PROCESSING'].includes(view.status);

/** Submits a job and returns how long it took to complete. */
async function timeJob(machine: CoreMachine, parameters: { tag: string; n: number; ms: number }, options: { fairnessKey?: string }): Promise<number> {
  const at = Date.now();
  const { job: submitted } = await machine.submitJob('fair.job', parameters, options);
  const done = await until(machine, submitted.jobId, ended, 60_000);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toBe(parameters.n);
  return Date.now() - at;
}

test("tenant B's 100 tasks, submitted behind tenant A's 100,000, finish within twice B's time alone", async () => {
  // 128 task slots per instance, 384 in all: B's 100 tasks fit when B runs alone, as they would on
  // a scaled-out app; A's 100,000 hold every slot when B arrives.
  const cluster = await startCluster(3, { taskBatchSize: 16, taskConcurrency: 8 });
  const [first, second, third] = cluster.machines as [CoreMachine, CoreMachine, CoreMachine];
  let big: JobView | undefined;
  try {
    // Tasks that wait 500 ms (a call to a service): the slots bind, not this 2-core machine's CPU,
    // as on Azure where instances scale out. B alone, twice: the first run
    // warms the engines up, the second is the time compared with.
    await timeJob(first, { tag: 'B-warm', n: 100, ms: 500 }, { fairnessKey: 'tenant-b' });
    const alone = await timeJob(second, { tag: 'B-alone', n: 100, ms: 500 }, { fairnessKey: 'tenant-b' });

    big = (await first.submitJob('fair.job', { tag: 'A', n: 100_000, ms: 500 }, { fairnessKey: 'tenant-a' })).job;
    const bigId = big.jobId;
    // B comes in once all of A's 100,000 tasks and their messages exist and A is running.
    const running = await until(third, bigId, (view) => (view.stages[0]?.total ?? 0) === 100_000 && (view.stages[0]?.completed ?? 0) >= 500, 120_000);
    expect(running.status).toBe('PROCESSING');
    const behind = await timeJob(third, { tag: 'B', n: 100, ms: 500 }, { fairnessKey: 'tenant-b' });
    const bigNow = await second.getJob(bigId);

    console.log(`fair share: B alone ${alone} ms, B behind A's 100,000 tasks ${behind} ms; A had ${bigNow.stages[0]?.completed} done`);
    // Without fair share B would wait out A's 100,000 tasks (minutes); the absolute slack covers a
    // loaded machine, where B's run behind A's busy engines is slower than its run alone.
    expect(behind).toBeLessThanOrEqual(2 * alone + 5_000);
    // A was far from done: B did not simply wait for it.
    expect(bigNow.stages[0]?.completed ?? 0).toBeLessThan(90_000);

    // A is not lost to B: its tasks keep running, and cancelling it ends it (keeps the test short).
    const later = await until(first, bigId, (view) => (view.stages[0]?.completed ?? 0) > (bigNow.stages[0]?.completed ?? 0) + 200, 30_000);
    expect(later.stages[0]?.completed ?? 0).toBeGreaterThan((bigNow.stages[0]?.completed ?? 0) + 200);
  } finally {
    if (big) await first.cancelJob(big.jobId);
    await cluster.stop();
  }
});

test('a high-priority job submitted after a low one runs before what is left of it; keys share slots by weight', async () => {
  const cluster = await startCluster(2);
  const [first, second] = cluster.machines as [CoreMachine, CoreMachine];
  started.length = 0;
  const open: string[] = [];
  try {
    const { job: low } = await first.submitJob('fair.job', { tag: 'low', n: 2_000, ms: 3 }, { priority: 'low', fairnessKey: 'batch' });
    open.push(low.jobId);
    await until(first, low.jobId, (view) => (view.stages[0]?.completed ?? 0) >= 50, 30_000);
    const { job: high } = await second.submitJob('fair.job', { tag: 'high', n: 100, ms: 3 }, { priority: 'high' });
    const highDone = await until(second, high.jobId, ended, 60_000);
    expect(highDone.status).toBe('COMPLETED');
    expect(highDone.priority).toBe('high');
    expect(highDone.fairnessKey).toBeNull();
    const lowAtHighEnd = started.filter((tag) => tag === 'low').length;
    // Once the high job's tasks were ready, no low task was claimed until every high one had been.
    // Measured on claims (a task's started_at is its claim's transaction time), not on handler
    // starts, whose order on a loaded machine drifts from the claims' (34 lows among the high starts
    // once in CI): the lows claimed strictly between the first and the last high claim can only be
    // those of claims that began before the high tasks were committed, one per batch in flight.
    const claims = await db.pool.query<{ high: number; low_between: number }>(
      `WITH h AS (SELECT min(started_at) AS first, max(started_at) AS last FROM coremachine.tasks WHERE job_id = $1)
       SELECT (SELECT count(*)::int FROM coremachine.tasks WHERE job_id = $1 AND started_at IS NOT NULL) AS high,
              (SELECT count(DISTINCT started_at)::int FROM coremachine.tasks, h WHERE job_id = $2 AND started_at > h.first AND started_at < h.last) AS low_between`,
      [high.jobId, low.jobId],
    );
    console.log(`fair share: low claims between the high ones ${JSON.stringify(claims.rows[0])}`);
    expect(claims.rows[0]?.high).toBe(100);
    expect(claims.rows[0]?.low_between).toBeLessThanOrEqual(2 * 2); // claims: 2 instances × 2 batches in flight
    expect(lowAtHighEnd).toBeLessThan(2_000 - 500);
    expect((await first.cancelJob(low.jobId)).status).toBe('CANCELLED');
    open.length = 0;

    // Weight 3 against 1, both with more work than the slots: the heavy key gets about three times the starts.
    started.length = 0;
    const [heavy, light] = await Promise.all([
      first.submitJob('fair.job', { tag: 'heavy', n: 1_000, ms: 10 }, { fairnessKey: 'heavy', fairnessWeight: 3 }),
      second.submitJob('fair.job', { tag: 'light', n: 1_000, ms: 10 }, { fairnessKey: 'light', fairnessWeight: 1 }),
    ]);
    open.push(heavy.job.jobId, light.job.jobId);
    await until(first, heavy.job.jobId, (view) => (view.stages[0]?.completed ?? 0) >= 600 || ended(view), 60_000);
    // Past the first starts (one job's tasks may exist before the other's) and before either runs out.
    const window = started.slice(100, 700);
    const ratio = window.filter((tag) => tag === 'heavy').length / Math.max(1, window.filter((tag) => tag === 'light').length);

    console.log(`fair share: weight 3 vs 1, starts ratio ${ratio.toFixed(2)} over ${window.length} starts`);
    // Around 3 (1 without weights); handler starts drift a little from claim order on a loaded machine.
    expect(ratio).toBeGreaterThan(1.8);
    expect(ratio).toBeLessThan(5);
  } finally {
    for (const jobId of open) await first.cancelJob(jobId);
    await cluster.stop();
  }
});

test('priority and fairness options are checked at submission: bad ones are refused with the issues and store nothing', async () => {
  const cluster = await startCluster(1);
  const [machine] = cluster.machines as [CoreMachine];
  try {
    const refusals: Array<[Record<string, unknown>, RegExp]> = [
      [{ priority: 'urgent' }, /"priority".*|high.*normal.*low/],
      [{ fairnessKey: '' }, /fairnessKey/],
      [{ fairnessKey: 'a\u0000b' }, /fairnessKey/],
      [{ fairnessKey: 'x'.repeat(201) }, /fairnessKey/],
      [{ fairnessKey: 'k', fairnessWeight: 0 }, /at least 1/],
      [{ fairnessKey: 'k', fairnessWeight: 101 }, /at most 100/],
      [{ fairnessKey: 'k', fairnessWeight: 1.5 }, /whole number/],
      [{ fairnessWeight: 2 }, /needs a fairness key/],
    ];
    for (const [options, message] of refusals) {
      const attempt = machine.submitJob('fair.job', { tag: 'bad', n: 1, ms: 0 }, options);
      await expect(attempt).rejects.toBeInstanceOf(ValidationError);
      const refusal = (await attempt.then(
        () => undefined,
        (error: unknown) => error,
      )) as ValidationError;
      expect(JSON.stringify(refusal.issues)).toMatch(message);
    }
    expect((await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM coremachine.jobs WHERE parameters->>'tag' = 'bad'")).rows[0]?.n).toBe(0);
    // Kept as first submitted: a resubmission with other options returns the job unchanged.
    const { job: kept } = await machine.submitJob('fair.job', { tag: 'kept', n: 1, ms: 0 }, { priority: 'low', fairnessKey: 'k', fairnessWeight: 7 });
    const { job: again, created } = await machine.submitJob('fair.job', { tag: 'kept', n: 1, ms: 0 }, { priority: 'high' });
    expect(created).toBe(false);
    expect(again).toMatchObject({ jobId: kept.jobId, priority: 'low', fairnessKey: 'k', fairnessWeight: 7 });
    expect((await until(machine, kept.jobId, ended, 20_000)).status).toBe('COMPLETED');
  } finally {
    await cluster.stop();
  }
});

test('shareSlots: the best class only, water-filled by running tasks per unit of weight', () => {
  const loads = [
    { rank: 1, key: 'a', weight: 1, running: 10 },
    { rank: 1, key: 'b', weight: 1, running: 0 },
    { rank: 2, key: 'c', weight: 1, running: 0 },
  ];
  expect(shareSlots(loads, 8)).toEqual([{ rank: 1, key: 'b', count: 8 }]);
  expect(shareSlots(loads, 24)).toEqual([
    { rank: 1, key: 'a', count: 7 },
    { rank: 1, key: 'b', count: 17 },
  ]);
  const weighted = shareSlots(
    [
      { rank: 0, key: 'heavy', weight: 3, running: 0 },
      { rank: 0, key: 'light', weight: 1, running: 0 },
    ],
    16,
  );
  expect(weighted).toEqual([
    { rank: 0, key: 'heavy', count: 12 },
    { rank: 0, key: 'light', count: 4 },
  ]);
  expect(shareSlots([], 4)).toEqual([]);
});
