import { z } from 'zod';
import { defineJob, defineTask } from '../models';
import { startHarness, useTestDatabase, waitForJob, type Harness } from './support/harness';
import { receiveTaskBodies } from './support/task-messages';

// A stage's tasks are created in chunks of 100, 100, 200, 400, … doubling up to 5,000, each chunk
// committed and dispatched on its own (core/engine/stage-creation.ts).
const db = useTestDatabase();

/** Set by a test: the fan-out of stage 1 throws once, as a killed connection would, after this many specs. */
const faults = { crashAfter: -1, shuffleOnResume: false, runs: new Map<string, number>() };

const item = defineTask({
  type: 'chunks.item',
  parameters: z.object({ index: z.number().int(), value: z.number() }),
  handler: ({ index, value }, ctx) => {
    faults.runs.set(ctx.taskId, (faults.runs.get(ctx.taskId) ?? 0) + 1);
    return Promise.resolve({ index, value });
  },
});

function* seed(n: number) {
  const order = Array.from({ length: n }, (_, index) => index);
  if (faults.shuffleOnResume && faults.crashAfter < 0) order.reverse();
  for (const [position, index] of order.entries()) {
    if (position === faults.crashAfter) {
      faults.crashAfter = -1;
      throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    }
    yield { index, value: index };
  }
}

const chunked = defineJob({ type: 'chunks.two_stages', parameters: z.object({ n: z.number().int(), tag: z.string() }) })
  .stage({ name: 'seed', task: item, fanOut: ({ parameters }) => seed(parameters.n) })
  .stage({
    name: 'double',
    task: item,
    async *fanOut({ previous }) {
      for await (const r of previous) yield { index: r.index, value: r.value * 2 };
    },
  })
  .finalize(async ({ previous }) => {
    let sum = 0;
    for await (const r of previous) sum += r.value;
    return { sum };
  });

async function harness(worker: boolean): Promise<Harness> {
  const h = await startHarness(db.pool, worker ? {} : { worker: false });
  h.registry.register(chunked);
  return h;
}

async function stageOne(jobId: string) {
  const stage = await db.pool.query('SELECT creating, created, total, completed, status FROM coremachine.stages WHERE job_id = $1 AND stage = 1', [jobId]);
  const tasks = await db.pool.query<{ n: number; indexes: number; lo: number; hi: number }>(
    'SELECT count(*)::int AS n, count(DISTINCT task_index)::int AS indexes, min(task_index) AS lo, max(task_index) AS hi FROM coremachine.tasks WHERE job_id = $1 AND stage = 1',
    [jobId],
  );
  return { stage: stage.rows[0] as Record<string, unknown>, tasks: tasks.rows[0] };
}

beforeEach(() => {
  faults.crashAfter = -1;
  faults.shuffleOnResume = false;
  faults.runs.clear();
});

test('a crash between chunks, then the process dies: the first chunks run but the stage cannot advance; the janitor resumes creation; exactly N tasks, each once', async () => {
  const n = 2600;
  const crashed = await harness(false);
  const { job } = await crashed.machine.submitJob('chunks.two_stages', { n, tag: 'crash' });
  const [message] = crashed.transport.jobs.receive(1);
  faults.crashAfter = 1200; // chunks up to [400, 800) are committed, [800, 1600) is not
  await expect(crashed.machine.processJobMessage(message?.body)).rejects.toThrow(/terminating connection/);
  expect(await stageOne(job.jobId)).toEqual({
    stage: { creating: true, created: 800, total: 801, completed: 0, status: 'PROCESSING' },
    tasks: { n: 800, indexes: 800, lo: 0, hi: 799 },
  });
  expect((await crashed.machine.getJob(job.jobId)).stages[0]).toMatchObject({ total: 800, completed: 0, status: 'PROCESSING' });

  // Every task of the committed chunks completes before the next chunk exists: no advance.
  const firstChunks = receiveTaskBodies(crashed.transport.tasks, 5000).bodies;
  expect(firstChunks).toHaveLength(800);
  await crashed.machine.processTaskMessages(firstChunks);
  const waiting = await crashed.machine.getJob(job.jobId);
  expect(waiting).toMatchObject({ status: 'PROCESSING', stage: 1 });
  expect(waiting.stages.map((s) => [s.stage, s.status, s.total, s.completed])).toEqual([
    [1, 'PROCESSING', 800, 800],
    [2, 'PENDING', 0, 0],
  ]);
  expect(crashed.transport.jobs.activeCount).toBe(1); // only the job message that failed, still locked
  await crashed.stop(); // the process dies with its queues

  const restarted = await harness(true);
  const report = await restarted.machine.sweep({ stallAfterMs: 0 });
  expect(report.stalled).toEqual([expect.objectContaining({ jobId: job.jobId, action: 'resent-job-message' })]);
  const done = await waitForJob(restarted.machine, job.jobId, 60_000);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ sum: n * (n - 1) });
  expect(await stageOne(job.jobId)).toEqual({
    stage: { creating: false, created: n, total: n, completed: n, status: 'COMPLETED' },
    tasks: { n, indexes: n, lo: 0, hi: n - 1 },
  });
  expect(faults.runs.size).toBe(2 * n);
  expect(Math.max(...faults.runs.values())).toBe(1);
  await restarted.stop();
});

test('a crash between chunks with the process alive: the job message is given back, redelivered and continues where the last chunk ended', async () => {
  const n = 6500;
  const h = await harness(true);
  faults.crashAfter = 4500; // 3,200 created (100 + 100 + 200 + … + 1,600), the chunk [3200, 6400) lost
  const { job } = await h.machine.submitJob('chunks.two_stages', { n, tag: 'redelivery' });
  const done = await waitForJob(h.machine, job.jobId, 90_000);
  expect(faults.crashAfter).toBe(-1);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ sum: n * (n - 1) });
  expect(await stageOne(job.jobId)).toEqual({
    stage: { creating: false, created: n, total: n, completed: n, status: 'COMPLETED' },
    tasks: { n, indexes: n, lo: 0, hi: n - 1 },
  });
  expect(faults.runs.size).toBe(2 * n);
  expect(Math.max(...faults.runs.values())).toBe(1);
  await h.worker?.drain();
  await h.stop();
});

test('a fan-out that yields different tasks when resumed fails the job instead of creating gaps or duplicates', async () => {
  const h = await harness(false);
  const { job } = await h.machine.submitJob('chunks.two_stages', { n: 1500, tag: 'not-deterministic' });
  const [message] = h.transport.jobs.receive(1);
  faults.crashAfter = 700;
  faults.shuffleOnResume = true;
  await expect(h.machine.processJobMessage(message?.body)).rejects.toThrow(/terminating connection/);
  const outcome = await h.machine.processJobMessage(message?.body);
  expect(outcome).toMatchObject({ kind: 'failed' });
  const failed = await h.machine.getJob(job.jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({ type: 'FanOutError', stage: 1, message: expect.stringContaining('must be deterministic') as unknown });
  const left = await db.pool.query("SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND status <> 'CANCELLED'", [job.jobId]);
  expect(left.rows[0]).toEqual({ n: 0 });
  await h.stop();
});
