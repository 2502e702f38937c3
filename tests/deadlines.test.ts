import type pg from 'pg';
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { DeadlineExceededError, InvalidTransitionError, ValidationError } from '../core/errors';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker, type WorkerOptions } from '../core/worker';
import { setAppContext } from '../functions/app-context';
import { submitJobHandler } from '../functions/http-jobs';
import { defineJob, defineRemoteTask, defineTask, MAX_TIMEOUT_SECONDS, TIMEOUT_HEADER, type ErrorShape, type JobEvent } from '../models';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { call } from './support/http-invoke';
import { appRegistry } from './support/registry';

const db = useTestDatabase();

/** What the handlers saw: which tasks started, and why each aborted one was aborted. */
const seen = { started: [] as string[], aborted: [] as unknown[], hold: true };
beforeEach(() => {
  seen.started = [];
  seen.aborted = [];
  seen.hold = true;
});

/** Holds until its signal aborts (as a well-behaved long handler does), unless `seen.hold` is off. */
const wait = defineTask({
  type: 'dl.wait',
  parameters: z.object({ index: z.number().int() }),
  handler: async ({ index }, ctx) => {
    seen.started.push(ctx.taskId);
    if (!seen.hold) return { index };
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    seen.aborted.push(ctx.signal.reason);
    throw ctx.signal.reason;
  },
});
const quick = defineTask({ type: 'dl.quick', parameters: z.object({ index: z.number().int() }), handler: ({ index }) => Promise.resolve({ index }) });
/** No worker ever claims it in these tests: a stage that waits without any handler running. */
const external = defineRemoteTask({ type: 'dl.external', parameters: z.object({ index: z.number().int() }), result: z.unknown() });

const jobTimeout = defineJob({ type: 'dl.job', parameters: z.object({ n: z.number().int().min(1), tag: z.string().optional() }), timeoutSeconds: 3600 })
  .stage({ name: 'work', task: wait, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index })) })
  .finalize(({ previous }) => ({ count: previous.count }));
const stageTimeout = defineJob({ type: 'dl.stage', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'quick', task: quick, timeoutSeconds: 60, fanOut: () => [{ index: 0 }] })
  .stage({ name: 'waiting', task: external, timeoutSeconds: 600, fanOut: () => [{ index: 0 }, { index: 1 }] })
  .finalize(() => ({ unreachable: true }));
const noTimeout = defineJob({ type: 'dl.plain', parameters: z.object({ n: z.number().int() }) })
  .stage({ name: 'one', task: quick, fanOut: () => [{ index: 0 }] })
  .finalize(() => ({ done: true }));

interface Instance {
  machine: CoreMachine;
  transport: InProcessTransport;
  startWorker(options?: Partial<WorkerOptions>): InProcessWorker;
  stop(): Promise<void>;
}

/** One engine instance (its own transport, and its own pool when given one). */
async function instance(pool: pg.Pool): Promise<Instance> {
  const transport = new InProcessTransport();
  const logger = captureLogger([]);
  const machine = await CoreMachine.create({ pool, registry: appRegistry(jobTimeout, stageTimeout, noTimeout), transport, logger });
  let worker: InProcessWorker | undefined;
  return {
    machine,
    transport,
    startWorker: (options = {}) =>
      (worker = new InProcessWorker(machine, transport, logger, { taskBatchSize: 1, taskConcurrency: 2, jobConcurrency: 1, ...options })),
    stop: async () => {
      await worker?.stop();
      await transport.close();
    },
  };
}

/**
 * The controllable clock: moves every clock of these jobs back by `ms` (submission, deadlines,
 * stage starts), exactly as if that much wall-clock time had passed since.
 */
async function advanceClock(jobIds: readonly string[], ms: number): Promise<void> {
  const by = `${ms} milliseconds`;
  await db.pool.query(
    `UPDATE coremachine.jobs SET created_at = created_at - $2::interval, deadline_at = deadline_at - $2::interval,
            stage_deadline_at = stage_deadline_at - $2::interval WHERE job_id = ANY($1::text[])`,
    [jobIds, by],
  );
  await db.pool.query('UPDATE coremachine.stages SET started_at = started_at - $2::interval WHERE job_id = ANY($1::text[])', [jobIds, by]);
}

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const HOUR = 3600_000;

test('declared timeouts are checked when the job type is defined', () => {
  const base = { type: 'dl.bad', parameters: z.object({}) };
  expect(() => defineJob({ ...base, timeoutSeconds: 0 })).toThrow(/timeoutSeconds must be an integer from 1/);
  expect(() => defineJob({ ...base, timeoutSeconds: MAX_TIMEOUT_SECONDS + 1 })).toThrow(TypeError);
  expect(() => defineJob(base).stage({ name: 's', task: quick, timeoutSeconds: 1.5, fanOut: () => [] })).toThrow(/stage "s" of job type "dl.bad"/);
  expect(
    defineJob({ ...base, timeoutSeconds: 5 })
      .stage({ name: 's', task: quick, fanOut: () => [] })
      .finalize(() => null).timeoutSeconds,
  ).toBe(5);
});

test('job timeout while tasks run: handlers aborted, queued tasks cancelled, the exact Timeout error, and the trail says why', async () => {
  const m = await instance(db.pool);
  const worker = m.startWorker();
  const { job } = await m.machine.submitJob('dl.job', { n: 6 });
  expect(job.timeoutSeconds).toBe(3600);
  expect(job.stageDeadline).toBeNull();
  expect((job.deadline?.getTime() ?? 0) - job.createdAt.getTime()).toBe(3600_000);
  await until(() => seen.started.length === 2, 'two handlers running');

  await advanceClock([job.jobId], 2 * HOUR);
  const report = await m.machine.sweep();
  expect(report.timedOutJobs).toBe(1);
  await worker.drain();

  // Both running handlers got their signal, with the Timeout as the reason; no other task started.
  expect(seen.aborted).toHaveLength(2);
  expect(seen.aborted.every((reason) => reason instanceof DeadlineExceededError)).toBe(true);
  expect(seen.started).toHaveLength(2);
  const failed = await m.machine.getJob(job.jobId);
  expect(failed.status).toBe('FAILED');
  const deadline = failed.deadline?.toISOString();
  expect(failed.error).toEqual({
    type: 'DeadlineExceededError',
    message: expect.stringMatching(/^the job passed its deadline/) as string,
    stage: 1,
    scope: 'job',
    deadline,
    elapsedMs: expect.any(Number) as number,
  });
  expect(failed.error?.elapsedMs).toBeGreaterThanOrEqual(2 * HOUR);
  expect(failed.error?.elapsedMs).toBeLessThan(2 * HOUR + 60_000);
  expect(failed.stages[0]).toMatchObject({ status: 'FAILED', completed: 0, failed: 0 });
  const tasks = await m.machine.listTasks(job.jobId);
  expect(tasks.map((t) => t.status)).toEqual(Array(6).fill('CANCELLED'));

  const events = await m.machine.listEvents(job.jobId);
  const end = events.filter((e) => e.entity === 'job' && e.to === 'FAILED');
  expect(end).toHaveLength(1);
  expect(end[0]).toMatchObject({ from: 'PROCESSING', error: { type: 'DeadlineExceededError', scope: 'job', stage: 1 } });
  // A second sweep finds nothing: the job is already FAILED.
  expect((await m.machine.sweep()).timedOutJobs).toBe(0);
  await m.stop();
});

test('stage timeout: counted from the stage start, dropped when the job moves on; a stage waiting with no handler times out too', async () => {
  const m = await instance(db.pool);
  const worker = m.startWorker();
  const { job } = await m.machine.submitJob('dl.stage', { tag: 'stage' });
  expect(job.deadline).toBeNull();
  await until(async () => (await m.machine.getJob(job.jobId)).stages[1]?.status === 'PROCESSING', 'stage 2 started');
  await worker.drain();
  const waiting = await m.machine.getJob(job.jobId);
  expect(waiting.stages[0]?.status).toBe('COMPLETED');
  // Stage 1's 60 s deadline was dropped at the advance; stage 2's runs from its own start.
  expect((waiting.stageDeadline?.getTime() ?? 0) - (waiting.stages[1]?.startedAt?.getTime() ?? 0)).toBeGreaterThanOrEqual(600_000 - 1000);
  expect((waiting.stageDeadline?.getTime() ?? 0) - (waiting.stages[1]?.startedAt?.getTime() ?? 0)).toBeLessThanOrEqual(600_000 + 1000);

  await advanceClock([job.jobId], HOUR);
  // Past the deadline no claim hands a task out, remote workers included.
  expect(await m.machine.remote.claim({ workerId: 'w1', taskTypes: ['dl.external'], maxTasks: 5 })).toEqual([]);
  expect((await m.machine.sweep()).timedOutJobs).toBe(1);
  const failed = await m.machine.getJob(job.jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({
    type: 'DeadlineExceededError',
    scope: 'stage',
    stage: 2,
    deadline: waiting.stageDeadline && new Date(waiting.stageDeadline.getTime() - HOUR).toISOString(),
  });
  expect(failed.error?.message).toMatch(/^stage 2 passed its deadline/);
  expect(failed.error?.elapsedMs).toBeGreaterThanOrEqual(HOUR);
  expect(failed.stages.map((s) => s.status)).toEqual(['COMPLETED', 'FAILED']);
  expect((await m.machine.listTasks(job.jobId, { stage: 2 })).map((t) => t.status)).toEqual(['CANCELLED', 'CANCELLED']);
  await m.stop();
});

test('a PAUSED job keeps its deadline: past it, it becomes FAILED; a retry gets a fresh deadline and completes', async () => {
  const m = await instance(db.pool);
  const published: JobEvent[] = [];
  m.machine.events.subscribe((event) => void published.push(event));
  const { job } = await m.machine.submitJob('dl.job', { n: 2, tag: 'paused' });
  expect((await m.machine.pauseJob(job.jobId)).status).toBe('PAUSED');
  await advanceClock([job.jobId], 2 * HOUR);
  expect((await m.machine.sweep()).timedOutJobs).toBe(1);
  // Subscribers hear why, like the trail: the JobFailed event carries the Timeout.
  expect(published.filter((e) => e.jobId === job.jobId)).toEqual([
    expect.objectContaining({
      type: 'JobFailed',
      status: 'FAILED',
      error: expect.objectContaining({ type: 'DeadlineExceededError', scope: 'job' }) as unknown,
    }),
  ]);
  const failed = await m.machine.getJob(job.jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({ type: 'DeadlineExceededError', scope: 'job', stage: 1 });
  const events = await m.machine.listEvents(job.jobId);
  expect(events.filter((e) => e.entity === 'job').map((e) => [e.from, e.to])).toEqual([
    [null, 'QUEUED'],
    ['QUEUED', 'PAUSED'],
    ['PAUSED', 'FAILED'],
  ]);
  await expect(m.machine.resumeJob(job.jobId)).rejects.toBeInstanceOf(InvalidTransitionError);

  // An operator retry: the same timeout again from now, not the deadline that already passed.
  const retried = await m.machine.retryJob(job.jobId);
  expect(retried.error).toBeNull();
  expect(retried.deadline?.getTime()).toBeGreaterThan(Date.now() + 3500_000);
  seen.hold = false;
  m.startWorker();
  const done = await waitForJob(m.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: 2 });
  await m.stop();
});

test('a claim after the deadline runs no handler and fails the job; a stage start after it creates no tasks', async () => {
  const m = await instance(db.pool);
  const { job } = await m.machine.submitJob('dl.job', { n: 3, tag: 'claim' });
  expect(await m.machine.processJobMessage({ jobId: job.jobId, jobType: 'dl.job', stage: 1 })).toMatchObject({ kind: 'started', tasks: 3 });
  const tasks = await m.machine.listTasks(job.jobId);
  await advanceClock([job.jobId], 2 * HOUR);

  const outcomes = await m.machine.processTaskMessages(tasks.map((t) => ({ taskId: t.taskId, jobId: job.jobId, stage: 1, taskType: 'dl.wait', attempt: 1 })));
  expect(outcomes.map((o) => o.kind)).toEqual(['ignored', 'ignored', 'ignored']);
  expect(outcomes.every((o) => 'reason' in o && /passed its deadline/.test(o.reason))).toBe(true);
  expect(seen.started).toEqual([]);
  const failed = await m.machine.getJob(job.jobId);
  expect(failed).toMatchObject({ status: 'FAILED', error: { type: 'DeadlineExceededError', scope: 'job', stage: 1 } });
  expect((await m.machine.listTasks(job.jobId)).map((t) => t.status)).toEqual(['CANCELLED', 'CANCELLED', 'CANCELLED']);

  const late = await m.machine.submitJob('dl.job', { n: 2, tag: 'late start' });
  await advanceClock([late.job.jobId], 2 * HOUR);
  expect(await m.machine.processJobMessage({ jobId: late.job.jobId, jobType: 'dl.job', stage: 1 })).toMatchObject({
    kind: 'failed',
    error: expect.stringMatching(/passed its deadline/) as string,
  });
  expect(await m.machine.listTasks(late.job.jobId)).toEqual([]);
  expect(await m.machine.getJob(late.job.jobId)).toMatchObject({ status: 'FAILED', error: { type: 'DeadlineExceededError' } });
  await m.stop();
});

test('per-submission override: engine, HTTP header and submission message; it may only shorten a declared timeout', async () => {
  const m = await instance(db.pool);
  const submitted: string[] = [];
  const submit = async (...args: Parameters<CoreMachine['submitJob']>) => {
    const { job } = await m.machine.submitJob(...args);
    submitted.push(job.jobId);
    return job;
  };
  const shorter = await submit('dl.job', { n: 1, tag: 'short' }, { timeoutSeconds: 60 });
  expect(shorter.timeoutSeconds).toBe(60);
  expect((shorter.deadline?.getTime() ?? 0) - shorter.createdAt.getTime()).toBe(60_000);
  expect((await submit('dl.plain', { n: 1 }, { timeoutSeconds: MAX_TIMEOUT_SECONDS })).timeoutSeconds).toBe(MAX_TIMEOUT_SECONDS);
  expect((await submit('dl.plain', { n: 2 })).deadline).toBeNull();

  const refused = async (jobType: string, timeoutSeconds: unknown) => {
    const error = await m.machine.submitJob(jobType, { n: 9 }, { timeoutSeconds }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).issues).toEqual(expect.arrayContaining([expect.objectContaining({ path: ['timeoutSeconds'] })]));
  };
  await refused('dl.job', 3601);
  await refused('dl.plain', MAX_TIMEOUT_SECONDS + 1);
  for (const bad of [0, -5, 1.5, '1.5', 'abc', '', '1e3']) await refused('dl.plain', bad);
  const stored = await db.pool.query("SELECT count(*)::int AS n FROM coremachine.jobs WHERE parameters->>'n' = '9'");
  expect(stored.rows[0]).toEqual({ n: 0 });

  setAppContext({ machine: m.machine, pool: db.pool, transport: m.transport, logger: captureLogger([]) });
  try {
    const post = (header: string, n: number) =>
      call(submitJobHandler, 'POST', 'jobs/dl.job', {
        params: { jobType: 'dl.job' },
        body: JSON.stringify({ n, tag: 'http' }),
        headers: { [TIMEOUT_HEADER]: header },
      });
    const accepted = await post('120', 1);
    expect(accepted.status).toBe(202);
    const body = accepted.body as { jobId: string; timeoutSeconds: number; deadline: string; createdAt: string };
    submitted.push(body.jobId);
    expect(body.timeoutSeconds).toBe(120);
    expect(Date.parse(body.deadline) - Date.parse(body.createdAt)).toBe(120_000);
    for (const header of ['7200', '0', 'soon', '99999999999']) {
      const reply = await post(header, 2);
      expect(reply.status).toBe(400);
      expect(reply.body).toMatchObject({ error: { type: 'ValidationError', issues: [expect.objectContaining({ path: ['timeoutSeconds'] })] } });
    }
  } finally {
    setAppContext(undefined);
  }

  const byMessage = await m.machine.submitFromMessage({ jobType: 'dl.job', parameters: { n: 3, tag: 'message' }, timeoutSeconds: 30 });
  submitted.push(byMessage.job.jobId);
  expect(byMessage.job.timeoutSeconds).toBe(30);
  await expect(m.machine.submitFromMessage({ jobType: 'dl.job', parameters: { n: 4 }, timeoutSeconds: 0 })).rejects.toBeInstanceOf(ValidationError);
  // Same type and parameters is the same job: a second submission does not change its deadline.
  const again = await m.machine.submitJob('dl.job', { n: 1, tag: 'short' }, { timeoutSeconds: 10 });
  expect(again).toMatchObject({ created: false, job: { timeoutSeconds: 60 } });

  for (const jobId of submitted) await m.machine.cancelJob(jobId);
  await m.stop();
});

test('two janitors sweeping at once fail each overdue job exactly once, in bounded batches', async () => {
  const a = await instance(db.pool);
  const otherPool = db.newPool(4);
  const b = await instance(otherPool);
  const jobIds: string[] = [];
  for (let n = 1; n <= 15; n++) jobIds.push((await a.machine.submitJob('dl.job', { n, tag: 'janitors' })).job.jobId);
  await advanceClock(jobIds, 2 * HOUR);

  let timedOut = 0;
  for (let round = 0; round < 10; round++) {
    const reports = await Promise.all([a.machine.sweep({ batchSize: 4 }), b.machine.sweep({ batchSize: 4 })]);
    for (const report of reports) expect(report.timedOutJobs).toBeLessThanOrEqual(4);
    const found = reports.reduce((sum, report) => sum + report.timedOutJobs, 0);
    if (found === 0) break;
    timedOut += found;
  }
  expect(timedOut).toBe(15);
  const failures = await db.pool.query<{ job_id: string; n: number }>(
    "SELECT job_id, count(*)::int AS n FROM coremachine.events WHERE entity = 'job' AND to_status = 'FAILED' AND job_id = ANY($1::text[]) GROUP BY job_id",
    [jobIds],
  );
  expect(failures.rows).toHaveLength(15);
  expect(failures.rows.every((row) => row.n === 1)).toBe(true);
  const errors = await db.pool.query<{ error: ErrorShape }>('SELECT error FROM coremachine.jobs WHERE job_id = ANY($1::text[])', [jobIds]);
  expect(errors.rows.every((row) => row.error.type === 'DeadlineExceededError')).toBe(true);
  await a.stop();
  await b.stop();
});
