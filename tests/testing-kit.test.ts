/**
 * coremachine/testing, as an app's tests use it: the example job `coremachine init` ships
 * (templates/app) end to end, the clock against deadlines and schedules, injected failures, and a
 * database of its own per kit, dropped on close.
 */
import pg from 'pg';
import { z } from 'zod';
import { defineJob, defineRegistration, defineRemoteTask, defineSchedule, defineTask, TaskFailure, UnknownTaskTypeError } from 'coremachine';
import { createTestKit, type TestKit } from 'coremachine/testing';
import { registration as templateRegistration } from '../templates/app/src/jobs';

jest.setTimeout(120_000);

const server = (): string => {
  const url = process.env.COREMACHINE_TEST_ADMIN_URL;
  if (!url) throw new Error('jest globalSetup did not pick a server');
  return url;
};

async function databaseExists(url: string): Promise<boolean> {
  const name = new URL(url).pathname.slice(1);
  const client = new pg.Client({ connectionString: server() });
  await client.connect();
  try {
    return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
  } finally {
    await client.end();
  }
}

const add = defineTask({
  type: 'kit.add',
  parameters: z.object({ index: z.number().int(), value: z.number() }),
  retry: { maxAttempts: 2 },
  handler: ({ index, value }) => Promise.resolve({ index, value: value + 1 }),
});
const sum = defineJob({ type: 'kit.sum', parameters: z.object({ values: z.array(z.number()), tag: z.string().optional() }) })
  .stage({ name: 'add', task: add, fanOut: ({ parameters }) => parameters.values.map((value, index) => ({ index, value })) })
  .finalize(async ({ previous }) => ({ total: (await previous.all()).reduce((total, r) => total + r.value, 0) }));
const outside = defineRemoteTask({ type: 'kit.outside', parameters: z.object({}), result: z.unknown() });
const waits = defineJob({ type: 'kit.waits', parameters: z.object({}), timeoutSeconds: 3600 })
  .stage({ name: 'outside', task: outside, fanOut: () => [{}] })
  .finalize(() => null);
const hourly = defineSchedule({ name: 'kit_hourly', cron: '0 * * * *', timezone: 'UTC', jobType: 'kit.sum', parameters: { values: [1, 2] } });
const registration = defineRegistration({ jobs: [sum, waits], schedules: [hourly] });

describe('the example job of coremachine init, with its own test kit', () => {
  let kit: TestKit;
  beforeAll(async () => {
    kit = await createTestKit({ registration: templateRegistration, databaseUrl: server() });
  });
  afterAll(async () => {
    await kit.close();
  });

  test('approved, it counts the words of every text', async () => {
    const { job } = await kit.submitJob('word_report', { texts: ['the quick brown fox', 'jumps over', 'the lazy dog'] });
    const waiting = await kit.waitForSignal(job.jobId, 'approval');
    expect(waiting.status).toBe('PROCESSING');
    await kit.deliverSignal(job.jobId, 'approval', { approvedBy: 'ana' });
    const done = await kit.waitForJob(job.jobId);
    expect(done.status).toBe('COMPLETED');
    expect(done.result).toEqual({ texts: 3, words: 9, approvedBy: 'ana' });
  });

  test('a failed count is retried, and attempts are counted', async () => {
    const failure = kit.failTask('word_report.count', { times: 2 });
    const { job } = await kit.submitJob('word_report', { texts: ['one two three'] });
    await kit.waitForSignal(job.jobId, 'approval');
    await kit.deliverSignal(job.jobId, 'approval', { approvedBy: 'ana' });
    expect((await kit.waitForJob(job.jobId)).status).toBe('COMPLETED');
    expect([failure.failures, failure.remaining]).toEqual([2, 0]);
    const [task] = await kit.listTasks(job.jobId, { stage: 2 });
    expect(task).toMatchObject({ status: 'COMPLETED', attempt: 3 });
  });

  test('a day without the approval fails the job with a DeadlineExceededError, by the clock', async () => {
    const { job } = await kit.submitJob('word_report', { texts: ['never approved'] });
    await kit.waitForSignal(job.jobId, 'approval');
    const before = kit.clock.now().getTime();
    const sweep = await kit.clock.advance({ hours: 23 });
    expect(sweep.timedOutJobs).toBe(0);
    expect((await kit.getJob(job.jobId)).status).toBe('PROCESSING');
    expect((await kit.clock.advance({ hours: 2 })).timedOutJobs).toBe(1);
    const failed = await kit.getJob(job.jobId);
    expect(failed.status).toBe('FAILED');
    expect(failed.error).toMatchObject({ type: 'DeadlineExceededError', scope: 'stage', stage: 1 });
    expect(kit.clock.now().getTime() - before).toBeGreaterThanOrEqual(25 * 3600_000);
  });
});

describe('a kit of its own', () => {
  let kit: TestKit;
  beforeAll(async () => {
    kit = await createTestKit({ registration, databaseUrl: server(), now: new Date('2026-03-02T09:30:00Z') });
  });
  afterAll(async () => {
    await kit.close();
  });

  test('run() submits and waits for the end', async () => {
    const done = await kit.run('kit.sum', { values: [1, 2, 3] });
    expect(done).toMatchObject({ status: 'COMPLETED', result: { total: 9 } });
  });

  test('failTask: a chosen error, every run until restored, and refusals for what it cannot do', async () => {
    const always = kit.failTask('kit.add', { times: Infinity, error: new TaskFailure('the ledger is closed', { nonRetryable: true }) });
    const failed = await kit.run('kit.sum', { values: [5], tag: 'closed' });
    expect(failed.status).toBe('FAILED');
    expect(failed.error?.message).toContain('the ledger is closed');
    expect(always.failures).toBe(1);
    always.restore();
    expect((await kit.run('kit.sum', { values: [5], tag: 'open' })).status).toBe('COMPLETED');

    const made = kit.failTask('kit.add', { error: ({ attempt }: { attempt: number }) => new Error(`attempt ${attempt} broke`) });
    const retried = await kit.run('kit.sum', { values: [7], tag: 'made' });
    expect(retried.status).toBe('COMPLETED');
    expect(made.failures).toBe(1);
    const [task] = await kit.listTasks(retried.jobId);
    expect(task?.attempt).toBe(2);

    expect(() => kit.failTask('kit.nope')).toThrow(UnknownTaskTypeError);
    expect(() => kit.failTask('kit.outside')).toThrow(/remote/);
    expect(() => kit.failTask('kit.add', { times: 0 })).toThrow(/times/);
  });

  test('schedules fire by the clock, and the job they submit runs', async () => {
    expect(kit.clock.now().toISOString()).toMatch(/^2026-03-02T09:30/);
    // A schedule seen for the first time starts from now: the sweep at start registered it.
    const first = await kit.clock.advance({ minutes: 29 });
    expect(first.schedules?.fired ?? []).toEqual([]);
    const second = await kit.clock.advance({ minutes: 2 });
    expect(second.schedules?.fired.map((fire) => fire.tick.toISOString())).toEqual(['2026-03-02T10:00:00.000Z']);
    const jobId = second.schedules?.fired[0]?.jobId ?? '';
    expect(await kit.waitForJob(jobId)).toMatchObject({ status: 'COMPLETED', result: { total: 5 } });
    const [view] = await kit.listSchedules();
    expect(view).toMatchObject({ name: 'kit_hourly', nextFireAt: new Date('2026-03-02T11:00:00Z') });
  });

  test("a job's own deadline: a stage no worker finishes, failed once the clock passes it", async () => {
    const { job } = await kit.submitJob('kit.waits', {});
    await kit.waitForJob(job.jobId, { until: (view) => view.stages[0]?.status === 'PROCESSING' });
    await kit.clock.advance({ minutes: 61 });
    expect(await kit.getJob(job.jobId)).toMatchObject({ status: 'FAILED', error: { type: 'DeadlineExceededError', scope: 'job' } });
  });
});

test('each kit has a database of its own, dropped when it closes; a wrong setting is refused by its option name', async () => {
  const [a, b] = await Promise.all([createTestKit({ registration, databaseUrl: server() }), createTestKit({ registration, databaseUrl: server() })]);
  expect(a.databaseUrl).not.toBe(b.databaseUrl);
  await a.run('kit.sum', { values: [1] });
  expect((await b.listJobs()).jobs).toEqual([]);
  await Promise.all([a.close(), b.close()]);
  expect(await databaseExists(a.databaseUrl)).toBe(false);
  expect(await databaseExists(b.databaseUrl)).toBe(false);

  await expect(createTestKit({ registration, databaseUrl: server(), taskConcurrency: 0 })).rejects.toThrow(
    /invalid configuration: option taskConcurrency \(TASK_CONCURRENCY\): /,
  );
});

test('without a server, the kits of a process share an embedded PostgreSQL, stopped with the last of them', async () => {
  const env = { PATH: process.env.PATH ?? '' };
  const [a, b] = await Promise.all([createTestKit({ registration, env }), createTestKit({ registration, env })]);
  const embedded = new URL(a.databaseUrl);
  expect(new URL(b.databaseUrl).port).toBe(embedded.port);
  expect(embedded.port).not.toBe(new URL(server()).port);
  expect((await a.run('kit.sum', { values: [2] })).status).toBe('COMPLETED');
  await a.close();
  // Still serving the other kit.
  expect((await b.run('kit.sum', { values: [3] })).status).toBe('COMPLETED');
  await b.close();
  const probe = new pg.Client({ connectionString: b.databaseUrl.replace(/\/[^/]*$/, '/postgres'), connectionTimeoutMillis: 2000 });
  await expect(probe.connect()).rejects.toThrow(/ECONNREFUSED/);
});

test('waitForSignal says so when the job ends without ever waiting for it', async () => {
  const kit = await createTestKit({ registration: templateRegistration, databaseUrl: server() });
  try {
    const { job } = await kit.submitJob('word_report', { texts: ['x'] });
    await kit.waitForSignal(job.jobId, 'approval');
    await kit.cancelJob(job.jobId);
    await expect(kit.waitForSignal(job.jobId, 'approval')).rejects.toThrow(`job ${job.jobId} ended CANCELLED without waiting for signal "approval"`);
  } finally {
    await kit.close();
  }
});
