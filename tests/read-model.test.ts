import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import { cancelJob } from '../core/engine/control';
import { claimTasks } from '../core/state/tasks-store';
import { setAppContext } from '../functions/app-context';
import { getJobHandler } from '../functions/http-jobs';
import { captureLogger, startHarness, useTestDatabase, waitForJob, type Harness } from './support/harness';

/** What readers see of a job: every declared stage with its name, and durations that are never negative. */
const db = useTestDatabase();

let h: Harness;
afterEach(async () => {
  setAppContext(undefined);
  await h.stop();
});

/** Plays the jobs queue once: the job message starts its stage (tasks created QUEUED, nothing runs them). */
async function startStage(): Promise<void> {
  const [message] = h.transport.jobs.receive(1);
  if (!message) throw new Error('no job message to start the stage with');
  await h.machine.processJobMessage(message.body, { messageId: message.messageId });
  h.transport.jobs.complete(message);
}

async function getOverHttp(jobId: string): Promise<{ status: number; body: { stages: unknown[] } }> {
  setAppContext({ machine: h.machine, pool: db.pool, transport: h.transport, logger: captureLogger(h.logs) });
  const request = new HttpRequest({ method: 'GET', url: `http://localhost:7071/api/jobs/${jobId}`, params: { jobId } });
  const response = new HttpResponse(await getJobHandler(request, new InvocationContext({ functionName: 'jobs-get' })));
  return { status: response.status, body: (await response.json()) as { stages: unknown[] } };
}

test('GET /api/jobs/{id} lists every declared stage: pending ones by name with zero counters, before and after the first starts', async () => {
  h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('hello_world', { n: 3 });
  const pending = { status: 'PENDING', total: 0, completed: 0, failed: 0, startedAt: null, finishedAt: null };
  expect(job.stages).toEqual([
    { stage: 1, name: 'greet', ...pending },
    { stage: 2, name: 'reply', ...pending },
  ]);

  await startStage();
  const running = await getOverHttp(job.jobId);
  expect(running.status).toBe(200);
  expect(running.body.stages).toEqual([
    expect.objectContaining({ stage: 1, name: 'greet', status: 'PROCESSING', total: 3, completed: 0, failed: 0 }),
    { stage: 2, name: 'reply', ...pending },
  ]);

  const cancelled = await h.machine.cancelJob(job.jobId);
  expect(cancelled.stages.map((s) => [s.name, s.status])).toEqual([
    ['greet', 'CANCELLED'],
    ['reply', 'PENDING'],
  ]);
});

test('a job whose type this process no longer knows still shows all its stages, numbered', async () => {
  h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('hello_world', { n: 1 });
  await db.pool.query(`UPDATE coremachine.jobs SET job_type = 'retired_type' WHERE job_id = $1`, [job.jobId]);
  const view = await h.machine.getJob(job.jobId);
  expect(view.stages.map((s) => [s.stage, s.name, s.status])).toEqual([
    [1, 'stage 1', 'PENDING'],
    [2, 'stage 2', 'PENDING'],
  ]);
  await h.machine.cancelJob(job.jobId);
});

test('cancel racing a claim: the claimed task finishes no earlier than it started; tasks that never started have no start', async () => {
  h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('hello_world', { n: 4 });
  await startStage();
  const [first] = await h.machine.listTasks(job.jobId);
  if (!first) throw new Error('stage 1 has no tasks');

  // The cancel's transaction starts first (now() is fixed at its start) ...
  const canceller = await db.pool.connect();
  try {
    await canceller.query('BEGIN');
    await canceller.query('SELECT now()');
    await new Promise((resolve) => setTimeout(resolve, 50));
    // ... a worker claims a task and commits meanwhile (started_at = its later now()) ...
    expect(await claimTasks(db.pool, [{ taskId: first.taskId, attempt: 1 }], [60])).toHaveLength(1);
    // ... and the cancel then reaches that task: it must not finish before it started.
    await cancelJob(canceller, { registry: h.registry, logger: captureLogger([]) }, job.jobId);
    await canceller.query('COMMIT');
  } finally {
    canceller.release();
  }

  const tasks = await h.machine.listTasks(job.jobId);
  expect(tasks.map((t) => t.status)).toEqual(['CANCELLED', 'CANCELLED', 'CANCELLED', 'CANCELLED']);
  const [claimed, ...neverStarted] = tasks;
  expect(claimed?.startedAt).not.toBeNull();
  expect(claimed?.finishedAt?.getTime()).toBeGreaterThanOrEqual(claimed?.startedAt?.getTime() ?? Infinity);
  for (const task of neverStarted) {
    expect(task.startedAt).toBeNull();
    expect(task.finishedAt).not.toBeNull();
  }
  const stored = await db.pool.query<{ negative: number }>(
    'SELECT count(*)::int AS negative FROM coremachine.tasks WHERE job_id = $1 AND finished_at < started_at',
    [job.jobId],
  );
  expect(stored.rows[0]?.negative).toBe(0);
});

test('rows written before the fix (finished before started) are read with a zero, not a negative, duration', async () => {
  h = await startHarness(db.pool);
  const { job } = await h.machine.submitJob('hello_world', { n: 2 });
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('COMPLETED');
  await h.worker?.drain();
  await db.pool.query(`UPDATE coremachine.tasks SET finished_at = started_at - interval '5 seconds' WHERE job_id = $1`, [job.jobId]);
  await db.pool.query(`UPDATE coremachine.stages SET finished_at = started_at - interval '5 seconds' WHERE job_id = $1`, [job.jobId]);
  await db.pool.query(`UPDATE coremachine.jobs SET finished_at = started_at - interval '5 seconds' WHERE job_id = $1`, [job.jobId]);

  const view = await h.machine.getJob(job.jobId);
  const tasks = await h.machine.listTasks(job.jobId);
  const spans = [view, ...view.stages, ...tasks].map((r) => (r.finishedAt?.getTime() ?? NaN) - (r.startedAt?.getTime() ?? NaN));
  expect(spans).toHaveLength(1 + 2 + 4);
  expect(spans.every((ms) => ms === 0)).toBe(true);
});

test('an operator retry clears the start of the tasks it re-queues: cancelled before they run again, they show no duration', async () => {
  h = await startHarness(db.pool, { worker: { taskBatchSize: 1, taskConcurrency: 1 } });
  const { job } = await h.machine.submitJob('test.failing_job', { n: 3, failAt: 1 });
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('FAILED');
  await h.worker?.drain();
  await h.stop();
  const failedTask = (await h.machine.listTasks(job.jobId)).find((t) => t.status === 'FAILED');
  expect(failedTask?.startedAt).not.toBeNull();

  // Nothing runs the retried stage: the re-queued tasks stay QUEUED until the cancel.
  h = await startHarness(db.pool, { worker: false });
  await h.machine.retryJob(job.jobId);
  const requeued = (await h.machine.listTasks(job.jobId)).find((t) => t.taskId === failedTask?.taskId);
  expect(requeued).toMatchObject({ status: 'QUEUED', startedAt: null, finishedAt: null });
  await h.machine.cancelJob(job.jobId);
  const after = (await h.machine.listTasks(job.jobId)).find((t) => t.taskId === failedTask?.taskId);
  expect(after).toMatchObject({ status: 'CANCELLED', startedAt: null });
  expect(after?.finishedAt).not.toBeNull();
});
