import { useHarnessPerTest, waitForJob, type Harness } from './support/harness';

const ctx = useHarnessPerTest();
// The per-test harness, so test bodies read as before.
let h: Harness;
beforeEach(() => {
  h = ctx.h();
});

test('transient failures are retried with backoff through scheduled messages until the task succeeds', async () => {
  const { job } = await h.machine.submitJob('test.flaky_job', { n: 4, failTimes: 2, failOnly: 1 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ attempts: [1, 3, 1, 1] });
  const [retried] = await h.machine.listTasks(job.jobId, { stage: 1, afterIndex: 0, limit: 1 });
  expect(retried).toMatchObject({ taskIndex: 1, status: 'COMPLETED', attempt: 3 });
  const events = (await h.machine.listEvents(job.jobId)).filter((e) => e.taskId === retried?.taskId).map((e) => `${e.from ?? '∅'}→${e.to}@${e.attempt}`);
  // A first claim writes no event (its row has the times); from the first retry on, every step does.
  expect(events).toEqual(['PROCESSING→QUEUED@1', 'QUEUED→PROCESSING@2', 'PROCESSING→QUEUED@2', 'QUEUED→PROCESSING@3', 'PROCESSING→COMPLETED@3']);
  const retryErrors = (await h.machine.listEvents(job.jobId)).filter((e) => e.taskId === retried?.taskId && e.to === 'QUEUED' && e.error);
  expect(retryErrors.map((e) => e.error?.message)).toEqual(['transient failure 1 of task 1', 'transient failure 2 of task 1']);
  expect(h.effects.runs.get(retried?.taskId ?? '')).toBe(3);
});

test('when attempts run out the task and job fail with the last error', async () => {
  const { job } = await h.machine.submitJob('test.flaky_job', { n: 2, failTimes: 5, failOnly: 0 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error).toMatchObject({ type: 'TaskHandlerError', message: 'transient failure 3 of task 0', taskId: `${job.jobId}-s1-t0` });
  const [task] = await h.machine.listTasks(job.jobId, { status: 'FAILED' });
  expect(task?.attempt).toBe(3);
});

test('an error that says it is not retryable fails at once despite the retry policy', async () => {
  const { job } = await h.machine.submitJob('test.flaky_job', { n: 1, failTimes: 1, permanent: true });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error?.cause).toMatchObject({ type: 'TaskFailure', message: 'task 0 can never succeed' });
  expect(h.effects.total).toBe(1);
});

test('a tolerant stage completes with failures within its limit: COMPLETED_WITH_ERRORS listing them', async () => {
  const { job } = await h.machine.submitJob('test.tolerant_job', { n: 10, failing: [3, 7] });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED_WITH_ERRORS');
  expect(done.result).toEqual({ survivors: 8 });
  expect(done.stages.map((s) => [s.status, s.total, s.completed, s.failed])).toEqual([
    ['COMPLETED', 10, 8, 2],
    ['COMPLETED', 8, 8, 0],
  ]);
  expect(done.error?.type).toBe('TasksFailedError');
  expect(done.error?.failures?.map((f) => f.taskId)).toEqual([`${job.jobId}-s1-t3`, `${job.jobId}-s1-t7`]);
});

test('one failure past the tolerance fails the job and cancels what has not started', async () => {
  const { job } = await h.machine.submitJob('test.tolerant_job', { n: 10, failing: [1, 2, 3] });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.stages[0]?.failed).toBeGreaterThanOrEqual(3);
  expect(done.stage).toBe(1);
});
