import { expectedThreeStageSum } from './support/test-jobs';
import { useHarnessPerTest, waitForJob, type Harness } from './support/harness';

const ctx = useHarnessPerTest();
// The per-test harness, so test bodies read as before.
let h: Harness;
beforeEach(() => {
  h = ctx.h();
});

test('a three-stage job runs to COMPLETED with exact counts per stage and the aggregated result', async () => {
  const n = 60;
  const { job, created } = await h.machine.submitJob('test.three_stages', { n });
  expect(created).toBe(true);
  expect(['QUEUED', 'PROCESSING']).toContain(job.status);
  const done = await waitForJob(h.machine, job.jobId);

  expect(done.status).toBe('COMPLETED');
  expect(done.stage).toBe(3);
  expect(done.error).toBeNull();
  expect(done.result).toEqual({ count: n, sum: expectedThreeStageSum(n) });
  expect(done.stages.map((s) => [s.stage, s.name, s.status, s.total, s.completed, s.failed])).toEqual([
    [1, 'seed', 'COMPLETED', n, n, 0],
    [2, 'double', 'COMPLETED', n, n, 0],
    [3, 'increment', 'COMPLETED', n, n, 0],
  ]);
  const tasks = await h.machine.listTasks(job.jobId, { stage: 3 });
  expect(tasks).toHaveLength(n);
  expect(tasks.every((t) => t.status === 'COMPLETED' && t.attempt === 1)).toBe(true);
  expect(tasks[5]?.result).toEqual({ index: 5, value: 11 });
  expect(h.effects.total).toBe(3 * n);
  expect(h.effects.maxPerTask()).toBe(1);
});

test('resubmitting the same parameters returns the same job and runs nothing twice', async () => {
  const first = await h.machine.submitJob('test.three_stages', { n: 5, tag: 'idem' });
  const second = await h.machine.submitJob('test.three_stages', { tag: 'idem', n: 5 });
  expect(second.created).toBe(false);
  expect(second.job.jobId).toBe(first.job.jobId);
  expect(first.job.jobId).toMatch(/^[0-9a-f]{64}$/);
  await waitForJob(h.machine, first.job.jobId);
  await h.worker?.drain();
  expect(h.effects.total).toBe(15);
  const third = await h.machine.submitJob('test.three_stages', { n: 5, tag: 'idem' });
  expect(third.job.status).toBe('COMPLETED');
});

test('a stage with zero tasks completes at once and the job advances', async () => {
  const { job } = await h.machine.submitJob('test.zero_task_stage', { label: 'empty first stage' });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.stages.map((s) => [s.total, s.completed, s.status])).toEqual([
    [0, 0, 'COMPLETED'],
    [1, 1, 'COMPLETED'],
  ]);
  expect(done.result).toEqual({ values: [7] });
});

test('hello_world: n greetings, a reply per greeting, a summary', async () => {
  const { job } = await h.machine.submitJob('hello_world', { n: 25 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.stages.map((s) => s.completed)).toEqual([25, 25]);
  expect(done.result).toMatchObject({ greetings: 25, replies: 25, summary: '25 of 25 greetings answered' });
});

test('word_frequencies: list → count per file in parallel → merged top k', async () => {
  const { job } = await h.machine.submitJob('word_frequencies', { topK: 3 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.stages.map((s) => [s.name, s.total])).toEqual([
    ['list', 1],
    ['count', 3],
  ]);
  const result = done.result as { files: number; top: Array<{ word: string; count: number }> };
  expect(result.files).toBe(3);
  expect(result.top[0]).toEqual({ word: 'the', count: expect.any(Number) as number });
  expect(result.top).toHaveLength(3);
});

test('a stage larger than one fan-out chunk: every task created once, in order, and the result exact', async () => {
  const n = 5001;
  const { job } = await h.machine.submitJob('test.three_stages', { n, tag: 'chunks' });
  const done = await waitForJob(h.machine, job.jobId, 60_000);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: n, sum: n * n });
  expect(done.stages.map((s) => [s.total, s.completed])).toEqual([
    [n, n],
    [n, n],
    [n, n],
  ]);
  const [last] = await h.machine.listTasks(job.jobId, { stage: 3, afterIndex: n - 2, limit: 5 });
  expect(last).toMatchObject({ taskIndex: n - 1, taskId: `${job.jobId}-s3-t${n - 1}`, result: { index: n - 1, value: 2 * (n - 1) + 1 } });
  expect(h.effects.total).toBe(3 * n);
});

test('a fan-out that fails after some chunks were committed fails the job; no created task is left to run', async () => {
  // Chunks are committed (and run) as the fan-out yields them: the 3,200 tasks of the chunks
  // committed before the throw (100 + 100 + 200 + … + 1,600) exist, each index once; the job fails
  // with the fan-out's error and those not yet run are cancelled, none left QUEUED or PROCESSING.
  const { job } = await h.machine.submitJob('test.fan_out_fails_midway', { id: 1 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error).toMatchObject({ type: 'FanOutError', stage: 1 });
  expect(done.stages).toEqual([expect.objectContaining({ total: 3200, status: 'FAILED' })]);
  await h.worker?.drain();
  const counts = await ctx
    .db()
    .pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 GROUP BY status', [job.jobId]);
  expect(counts.rows.every((row) => row.status === 'CANCELLED' || row.status === 'COMPLETED')).toBe(true);
  expect(counts.rows.reduce((sum, row) => sum + row.n, 0)).toBe(3200);
  const span = await ctx.db().pool.query('SELECT min(task_index)::int AS lo, max(task_index)::int AS hi FROM coremachine.tasks WHERE job_id = $1', [job.jobId]);
  expect(span.rows[0]).toEqual({ lo: 0, hi: 3199 });
});
