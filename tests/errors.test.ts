import { UnknownJobTypeError, ValidationError } from '../core/errors';
import type { TestDatabase } from './support/test-database';
import { startHarness, useHarnessPerTest, waitForJob, type Harness } from './support/harness';

const ctx = useHarnessPerTest();
// Getters over the per-test values, so test bodies read as before.
let db: TestDatabase;
let h: Harness;
beforeEach(() => {
  db = ctx.db();
  h = ctx.h();
});

async function jobCount(): Promise<number> {
  return (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs')).rows[0]?.n ?? -1;
}

test('a job without its required parameters is rejected with the zod issues and nothing is stored', async () => {
  const before = await jobCount();
  const error = await h.machine.submitJob('hello_world', {}).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  expect((error as ValidationError).issues).toEqual([expect.objectContaining({ path: ['n'], code: 'invalid_type' })]);
  const outOfRange = await h.machine.submitJob('hello_world', { n: 10_001 }).catch((e: unknown) => e);
  expect((outOfRange as ValidationError).issues).toEqual([expect.objectContaining({ path: ['n'], code: 'too_big' })]);
  expect(await jobCount()).toBe(before);
  expect(h.transport.jobs.stats.sent).toBe(0);
  await expect(h.machine.submitJob('no_such_job', {})).rejects.toBeInstanceOf(UnknownJobTypeError);
});

test("parameters that fail a task's own schema end the task and job FAILED with that error", async () => {
  const { job } = await h.machine.submitJob('test.bad_task_parameters', { n: 3 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error).toMatchObject({ type: 'TaskValidationError', stage: 1, taskId: `${job.jobId}-s1-t0` });
  expect(done.error?.issues).toEqual([expect.objectContaining({ path: ['count'], code: 'invalid_type' })]);
  const [task] = await h.machine.listTasks(job.jobId, { stage: 1, status: 'FAILED' });
  expect(task?.error?.type).toBe('TaskValidationError');
  expect(h.effects.runs.get(`${job.jobId}-s1-t0`)).toBeUndefined();
});

test.each([
  ['error', 'RangeError', 'task 2 exploded'],
  ['string', 'NonErrorThrownError', 'plain string thrown by task'],
  ['object', 'NonErrorThrownError', '{"code":"E_DISK","detail":"disk full"}'],
])('a handler that throws (%s) ends the task and job FAILED with its message, on the first delivery', async (throwKind, causeType, message) => {
  const { job } = await h.machine.submitJob('test.failing_job', { n: 5, failAt: 2, throwKind });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error).toMatchObject({ type: 'TaskHandlerError', stage: 1, taskId: `${job.jobId}-s1-t2` });
  expect(done.error?.message).toContain(message);
  expect(done.error?.cause).toMatchObject({ type: causeType });
  expect(done.stages.map((s) => [s.name, s.status])).toEqual([
    ['work', 'FAILED'],
    ['never', 'PENDING'],
  ]);
  expect(h.effects.runs.get(`${job.jobId}-s1-t2`)).toBe(1);
  expect(h.transport.tasks.stats.abandoned).toBe(0);
});

test('a late sibling completing after the failure does not revive the job', async () => {
  let releaseSibling!: () => void;
  const sibling = new Promise<void>((resolve) => (releaseSibling = resolve));
  h = await ctx.restart({ beforeTask: (_id, index) => (index === 1 ? sibling : Promise.resolve()) });
  const { job } = await h.machine.submitJob('test.failing_job', { n: 2, failAt: 0 });
  await waitForJob(h.machine, job.jobId);
  expect((await h.machine.getJob(job.jobId)).status).toBe('FAILED');
  releaseSibling();
  await h.worker?.drain();
  const after = await h.machine.getJob(job.jobId);
  expect(after.status).toBe('FAILED');
  expect(after.stage).toBe(1);
  // The failure cancelled the running sibling (migration 015): its late result is fenced, not counted.
  expect(after.stages[0]).toMatchObject({ total: 2, completed: 0, failed: 1, status: 'FAILED' });
  expect((await h.machine.listTasks(job.jobId, {})).map((task) => task.status)).toEqual(['FAILED', 'CANCELLED']);
  expect(h.transport.jobs.stats.sent).toBe(1);
});

test('a fan-out that throws ends the job FAILED with FanOutError at that stage', async () => {
  const { job } = await h.machine.submitJob('test.fan_out_throws', { id: 1 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error).toMatchObject({ type: 'FanOutError', stage: 2 });
  expect(done.error?.message).toContain('fan-out could not list inputs');
  expect(done.error?.cause).toMatchObject({ type: 'Error', message: 'fan-out could not list inputs' });
});

test('a finalize that throws ends the job FAILED with FinalizeError', async () => {
  const { job } = await h.machine.submitJob('test.finalize_throws', { id: 1 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error).toMatchObject({ type: 'FinalizeError', stage: 1, cause: { type: 'TypeError', message: 'summary failed' } });
  expect(done.stages[0]?.status).toBe('COMPLETED');
});

const MISSING_JOB = 'f'.repeat(64);

test('malformed queue messages are dead-lettered at once with a reason, never retried', async () => {
  h.transport.tasks.send([{ messageId: 'junk-1', body: { taskId: 'x' } }]);
  h.transport.tasks.send([{ messageId: 'junk-2', body: 'not json at all' }]);
  h.transport.jobs.send([{ messageId: 'junk-3', body: { jobId: MISSING_JOB, jobType: 'hello_world', stage: 1 } }]);
  h.transport.tasks.send([{ messageId: 'junk-4', body: { taskId: `${MISSING_JOB}-s1-t0`, jobId: MISSING_JOB, stage: 1, taskType: 't', attempt: 1 } }]);
  // What PostgreSQL would refuse (NUL, int4 overflow) and ids no engine makes are malformed too.
  h.transport.jobs.send([{ messageId: 'junk-5', body: { jobId: 'a\u0000b', jobType: 'hello_world', stage: 1 } }]);
  h.transport.jobs.send([{ messageId: 'junk-6', body: { jobId: MISSING_JOB, jobType: 'hello_world', stage: 2 ** 31 } }]);
  let deep: unknown = 'bottom';
  for (let i = 0; i < 500; i++) deep = [deep];
  h.transport.tasks.send([{ messageId: 'junk-7', body: deep }]);
  await h.worker?.drain();
  const dead = [...h.transport.tasks.deadLetters, ...h.transport.jobs.deadLetters].sort((a, b) => a.messageId.localeCompare(b.messageId));
  expect(dead.map((d) => [d.messageId, d.deadLetterReason, d.deliveryCount])).toEqual([
    ['junk-1', 'MalformedMessageError', 1],
    ['junk-2', 'MalformedMessageError', 1],
    ['junk-3', 'JobNotFoundError', 1],
    ['junk-4', 'TaskNotFoundError', 1],
    ['junk-5', 'MalformedMessageError', 1],
    ['junk-6', 'MalformedMessageError', 1],
    ['junk-7', 'MalformedMessageError', 1],
  ]);
  expect(dead[0]?.deadLetterErrorDescription).toContain('jobId');
  // Every one is recorded for operators, even a body jsonb cannot hold (kept as its JSON text).
  const recorded = await db.pool.query<{ message_id: string; body: unknown }>(
    "SELECT message_id, body FROM coremachine.dead_letters WHERE message_id LIKE 'junk-%' ORDER BY message_id",
  );
  expect(recorded.rows.map((row) => row.message_id)).toEqual(['junk-1', 'junk-2', 'junk-3', 'junk-4', 'junk-5', 'junk-6', 'junk-7']);
  const nul = recorded.rows.find((row) => row.message_id === 'junk-5')?.body as { unstorableBody: string; issues: string[] };
  expect(JSON.parse(nul.unstorableBody)).toEqual({ jobId: 'a\u0000b', jobType: 'hello_world', stage: 1 });
  expect(nul.issues).toEqual([expect.stringContaining('jobId: string contains a NUL')]);
  const nested = recorded.rows.find((row) => row.message_id === 'junk-7')?.body as { unstorableBody: string; issues: string[] };
  expect(JSON.parse(nested.unstorableBody)).toEqual(deep);
});

test('a task message PostgreSQL would refuse is malformed on its own: the rest of its batch runs', async () => {
  const own = await startHarness(db.pool, { worker: false });
  try {
    const { job } = await own.machine.submitJob('test.three_stages', { n: 3, tag: 'poison-batch' });
    await own.machine.processJobMessage(own.transport.jobs.receive(1)[0]?.body);
    const good = own.transport.tasks.receive(10).map((m) => m.body as Record<string, unknown>);
    expect(good).toHaveLength(3);
    const poison = [
      { ...good[0], taskId: `${job.jobId}-s1-t0\u0000` },
      { ...good[1], attempt: 2 ** 31 },
      { ...good[2], stage: 1e12 },
      { ...good[0], taskType: 'test.\u0000' },
      { ...good[1], taskId: 'not-a-task-id' },
    ];
    const outcomes = await own.machine.processTaskMessages([poison[0], good[0], poison[1], good[1], poison[2], good[2], poison[3], poison[4]]);
    expect(outcomes.map((o) => o.kind)).toEqual(['malformed', 'completed', 'malformed', 'completed', 'malformed', 'completed', 'malformed', 'malformed']);
    const reasons = outcomes.filter((o) => o.kind === 'malformed').map((o) => o.reason);
    expect(reasons[0]).toContain('task id');
    expect(reasons[1]).toContain('attempt');
    expect(reasons[2]).toContain('stage');
    expect(reasons[3]).toContain('taskType');
    expect(reasons[4]).toContain('task id');
    const tasks = await own.machine.listTasks(job.jobId, { stage: 1 });
    expect(tasks.map((t) => [t.status, t.attempt])).toEqual([
      ['COMPLETED', 1],
      ['COMPLETED', 1],
      ['COMPLETED', 1],
    ]);
    // This harness has no worker to run the job's next stage.
    await own.machine.cancelJob(job.jobId);
  } finally {
    await own.stop();
  }
});
