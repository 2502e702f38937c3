import { InvalidTransitionError } from '../core/errors';
import { startHarness, waitForJob, useTestDatabase } from './support/harness';
import { switches } from './support/test-jobs';

const db = useTestDatabase();

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

test('cancel: pending tasks CANCELLED, running handlers aborted through their signal, late messages acknowledged without work', async () => {
  const running = gate();
  const aborted: string[] = [];
  let started = 0;
  const h = await startHarness(db.pool, {
    worker: { taskBatchSize: 2, taskConcurrency: 2 },
    beforeTask: async (taskId, _index, signal) => {
      started++;
      if (started === 4) running.open();
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => (aborted.push(taskId), resolve()), { once: true }));
    },
  });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 20, tag: 'cancel' });
  await running.opened;
  const cancelled = await h.machine.cancelJob(job.jobId);
  expect(cancelled.status).toBe('CANCELLED');
  await h.worker?.drain();

  expect(aborted).toHaveLength(4);
  const tasks = await h.machine.listTasks(job.jobId);
  expect(tasks.every((t) => t.status === 'CANCELLED')).toBe(true);
  expect(h.effects.total).toBe(4);
  const after = await h.machine.getJob(job.jobId);
  expect(after.status).toBe('CANCELLED');
  expect(after.stages[0]).toMatchObject({ status: 'CANCELLED', completed: 0 });
  await expect(h.machine.cancelJob(job.jobId)).rejects.toBeInstanceOf(InvalidTransitionError);
  await expect(h.machine.resumeJob(job.jobId)).rejects.toBeInstanceOf(InvalidTransitionError);
  await h.stop();
});

test('pause lets running tasks finish and count; resume re-dispatches the rest and the job completes exactly', async () => {
  const holding = gate();
  const release = gate();
  let started = 0;
  const h = await startHarness(db.pool, {
    worker: { taskBatchSize: 1, taskConcurrency: 2 },
    beforeTask: async () => {
      started++;
      if (started === 2) holding.open();
      if (started <= 2) await release.opened;
    },
  });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 10, tag: 'pause' });
  await holding.opened;
  expect((await h.machine.pauseJob(job.jobId)).status).toBe('PAUSED');
  release.open();
  await h.worker?.drain();
  const paused = await h.machine.getJob(job.jobId);
  expect(paused.status).toBe('PAUSED');
  expect(paused.stages[0]).toMatchObject({ completed: 2, total: 10 });
  expect(h.effects.total).toBe(2);

  const resumed = await h.machine.resumeJob(job.jobId);
  expect(resumed.status).toMatch(/QUEUED|PROCESSING/);
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: 10, sum: 100 });
  expect(h.effects.maxPerTask()).toBe(1);
  expect(h.effects.total).toBe(30);
  await h.worker?.drain();
  await h.stop();
});

test('retry a FAILED job: only the failed stage runs again, only its failed and cancelled tasks', async () => {
  switches.broken = true;
  const h = await startHarness(db.pool, { worker: { taskBatchSize: 1, taskConcurrency: 1 } });
  const { job } = await h.machine.submitJob('test.switchable_job', { n: 6, failAt: 2 });
  const failed = await waitForJob(h.machine, job.jobId);
  await h.worker?.drain();
  expect(failed.status).toBe('FAILED');
  expect(failed.stage).toBe(2);
  const before = new Map(h.effects.runs);
  const cancelledBefore = (await h.machine.listTasks(job.jobId, { stage: 2, status: 'CANCELLED' })).length;
  expect(cancelledBefore).toBe(3);

  await expect(h.machine.resumeJob(job.jobId)).rejects.toBeInstanceOf(InvalidTransitionError);
  switches.broken = false;
  expect((await h.machine.retryJob(job.jobId)).error).toBeNull();
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ done: 6 });
  expect(done.stages.map((s) => [s.completed, s.failed, s.status])).toEqual([
    [6, 0, 'COMPLETED'],
    [6, 0, 'COMPLETED'],
  ]);
  // Stage 1 and the stage-2 tasks that had completed did not run again.
  for (const [taskId, runs] of before) if (!taskId.endsWith('-s2-t2')) expect(h.effects.runs.get(taskId)).toBe(runs);
  expect(h.effects.runs.get(`${job.jobId}-s2-t2`)).toBe(2);
  await expect(h.machine.retryJob(job.jobId)).rejects.toBeInstanceOf(InvalidTransitionError);
  const jobEvents = (await h.machine.listEvents(job.jobId)).filter((e) => e.entity === 'job').map((e) => `${e.from ?? '∅'}→${e.to}`);
  expect(jobEvents).toEqual([
    '∅→QUEUED',
    'QUEUED→PROCESSING',
    'PROCESSING→QUEUED',
    'QUEUED→PROCESSING',
    'PROCESSING→FAILED',
    'FAILED→QUEUED',
    'QUEUED→PROCESSING',
    'PROCESSING→COMPLETED',
  ]);
  await h.worker?.drain();
  await h.stop();
});

test('retrying a job whose fan-out failed runs the fan-out again', async () => {
  const h = await startHarness(db.pool);
  const { job } = await h.machine.submitJob('test.fan_out_throws', { id: 42 });
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('FAILED');
  await h.machine.retryJob(job.jobId);
  const again = await waitForJob(h.machine, job.jobId);
  expect(again.status).toBe('FAILED');
  expect(again.error?.type).toBe('FanOutError');
  const fanOutFailures = (await h.machine.listEvents(job.jobId)).filter((e) => e.entity === 'job' && e.to === 'FAILED');
  expect(fanOutFailures).toHaveLength(2);
  await h.worker?.drain();
  await h.stop();
});
