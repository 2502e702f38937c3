/**
 * Task logs (ctx.log): lines buffered while a handler runs and written with its attempt's outcome,
 * bounded per attempt and per job with the oldest dropped and counted, kept by failed and retried
 * attempts, refused or bounded when hostile without failing the task, sent by remote workers with
 * their reports — and a handler that never logs costs no statement.
 */
import type pg from 'pg';
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { TaskNotFoundError, ValidationError } from '../core/errors';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineRemoteTask, defineTask, TASK_LOG_LIMITS, TaskFailure, type TaskLogPage } from '../models';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { appRegistry } from './support/registry';

// Declared before the database's hooks: jest runs afterAll hooks in declaration order, and the
// engine must stop before its database is dropped.
let stopEngine: (() => Promise<void>) | undefined;
afterAll(async () => {
  await stopEngine?.();
});
const db = useTestDatabase();

const lineWriter = (type: string) =>
  defineTask({
    type,
    parameters: z.object({ lines: z.number().int(), prefix: z.string(), bytes: z.number().int().default(0) }),
    handler: ({ lines, prefix, bytes }, ctx) => {
      for (let i = 1; i <= lines; i++) ctx.log('info', `${prefix} ${i}${'x'.repeat(bytes)}`, { i });
      return { lines };
    },
  });

const logging = defineJob({
  type: 'logs.job',
  parameters: z.object({ tasks: z.number().int(), lines: z.number().int(), run: z.string(), bytes: z.number().int().default(0) }),
})
  .stage({
    name: 'log',
    task: lineWriter('logs.lines'),
    fanOut: ({ parameters: p }) => Array.from({ length: p.tasks }, (_, i) => ({ lines: p.lines, prefix: `t${i}`, bytes: p.bytes })),
  })
  .finalize(({ previous }) => ({ tasks: previous.count }));

// Stage 1 fills the job to its cap; stage 2's lines, committed later, push the oldest out.
const overCap = defineJob({ type: 'logs.over_cap', parameters: z.object({ extra: z.number().int() }) })
  .stage({
    name: 'fill',
    task: lineWriter('logs.fill'),
    fanOut: () => Array.from({ length: TASK_LOG_LIMITS.linesPerJob / TASK_LOG_LIMITS.linesPerAttempt }, (_, i) => ({ lines: 100, prefix: `fill${i}` })),
  })
  .stage({ name: 'more', task: lineWriter('logs.more'), fanOut: ({ parameters }) => [{ lines: parameters.extra, prefix: 'more' }] })
  .finalize(() => ({}));

const attempts = new Map<string, number>();
const retried = defineJob({ type: 'logs.retried', parameters: z.object({ run: z.string() }) })
  .stage({
    name: 'retry',
    task: defineTask({
      type: 'logs.flaky',
      parameters: z.object({ permanent: z.boolean() }),
      retry: { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 1 },
      handler: ({ permanent }, ctx) => {
        attempts.set(ctx.taskId, (attempts.get(ctx.taskId) ?? 0) + 1);
        ctx.log('warn', `attempt ${ctx.attempt} starts`, { attempt: ctx.attempt });
        if (permanent) throw new TaskFailure('cannot ever work', { nonRetryable: true });
        if (ctx.attempt === 1) throw new Error('first attempt fails');
        ctx.log('info', 'second attempt works');
        return {};
      },
    }),
    fanOut: ({ parameters }) => [{ permanent: parameters.run === 'permanent' }],
  })
  .finalize(() => ({}));

const cyclic: Record<string, unknown> = { name: 'loop' };
cyclic.self = cyclic;
const hostile = defineJob({ type: 'logs.hostile', parameters: z.object({}) })
  .stage({
    name: 'hostile',
    task: defineTask({
      type: 'logs.hostile_lines',
      parameters: z.object({}),
      handler: (_parameters, ctx) => {
        // What a handler written in plain JavaScript, or a careless one, may pass: none of it may throw or fail the task.
        const log = ctx.log as (level: unknown, message: unknown, fields?: unknown) => void;
        log('info', 'nul \u0000 here');
        log('info', 'lone \ud800 surrogate');
        log('info', 'm'.repeat(10 * 1024 * 1024));
        log('info', 'big fields', { blob: 'f'.repeat(10_000) });
        log('info', 'bigint fields', { n: 10n });
        log('info', 'cyclic fields', cyclic);
        log('info', 'function fields', () => 1);
        log('info', 'nul in a key', { 'a\u0000b': 1 });
        log('fatal', 'unknown level');
        log('info', Symbol('not text'));
        log('info', Object.create(null) as object);
        log('error', 'multi\nline \u001b[31m');
        return { ok: true };
      },
    }),
    fanOut: () => [{}],
  })
  .finalize(() => ({}));

const remote = defineJob({ type: 'logs.remote', parameters: z.object({ run: z.string() }) })
  .stage({
    name: 'remote',
    task: defineRemoteTask({
      type: 'logs.remote_task',
      parameters: z.object({}),
      result: z.object({ ok: z.boolean() }),
      retry: { maxAttempts: 2, initialDelayMs: 1 },
    }),
    fanOut: () => [{}],
  })
  .finalize(() => ({}));

const silent = defineJob({ type: 'logs.silent', parameters: z.object({ n: z.number().int() }) })
  .stage({
    name: 'quiet',
    task: defineTask({ type: 'logs.quiet', parameters: z.object({ i: z.number().int() }), handler: ({ i }) => ({ i }) }),
    fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })),
  })
  .finalize(({ previous }) => ({ n: previous.count }));

const registry = appRegistry(logging, overCap, retried, hostile, remote, silent);

interface Engine {
  machine: CoreMachine;
  logs: string[];
  stop(): Promise<void>;
}

async function startEngine(pool: pg.Pool): Promise<Engine> {
  const transport = new InProcessTransport();
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const machine = await CoreMachine.create({ pool, registry, transport, logger });
  const worker = new InProcessWorker(machine, transport, logger, { taskBatchSize: 16, taskConcurrency: 4, jobConcurrency: 2 });
  return {
    machine,
    logs,
    stop: async () => {
      await worker.drain();
      await worker.stop();
      await transport.close();
    },
  };
}

let engine: Engine;
beforeAll(async () => {
  engine = await startEngine(db.pool);
  stopEngine = () => engine.stop();
});

async function finished(jobType: string, parameters: unknown, status = 'COMPLETED'): Promise<string> {
  const { job } = await engine.machine.submitJob(jobType, parameters);
  const done = await waitForJob(engine.machine, job.jobId, 60_000);
  expect(done.status).toBe(status);
  return job.jobId;
}

async function allLines(jobId: string, taskId: string): Promise<TaskLogPage> {
  return engine.machine.listTaskLogs(jobId, taskId, { limit: 1000 });
}

test('lines are stored with the task in order, with level, fields and attempt, shown in the listing and mirrored to the engine log', async () => {
  const jobId = await finished('logs.job', { tasks: 3, lines: 5, run: 'basic' });
  const taskId = `${jobId}-s1-t1`;
  const page = await allLines(jobId, taskId);
  expect(page).toMatchObject({ jobId, taskId, recorded: 5, dropped: 0, jobDropped: 0, nextAfterSeq: null });
  expect(page.lines.map((line) => [line.seq, line.attempt, line.level, line.message, line.fields])).toEqual(
    [1, 2, 3, 4, 5].map((i) => [i, 1, 'info', `t1 ${i}`, { i }]),
  );
  expect(page.lines[0]?.loggedAt).toBeInstanceOf(Date);
  const tasks = await engine.machine.listTasks(jobId);
  expect(tasks.map((task) => task.logs)).toEqual([1, 2, 3].map(() => ({ lines: 5, dropped: 0 })));
  // Mirrored as it was logged, marked as the task's own line.
  const mirrored = engine.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.origin === 'task' && line.taskId === taskId);
  expect(mirrored.map((line) => [line.level, line.message, line.fields, line.attempt])).toEqual([1, 2, 3, 4, 5].map((i) => ['info', `t1 ${i}`, { i }, 1]));
});

test('paging by afterSeq, bounded limits, and a task the job does not have is not found', async () => {
  const jobId = await finished('logs.job', { tasks: 1, lines: 7, run: 'paging' });
  const taskId = `${jobId}-s1-t0`;
  const first = await engine.machine.listTaskLogs(jobId, taskId, { limit: 3 });
  expect(first.lines.map((line) => line.seq)).toEqual([1, 2, 3]);
  expect(first.nextAfterSeq).toBe(3);
  const second = await engine.machine.listTaskLogs(jobId, taskId, { afterSeq: '3', limit: '3' });
  expect(second.lines.map((line) => line.seq)).toEqual([4, 5, 6]);
  const last = await engine.machine.listTaskLogs(jobId, taskId, { afterSeq: 6, limit: 3 });
  expect(last.lines.map((line) => line.seq)).toEqual([7]);
  expect(last.nextAfterSeq).toBeNull();
  await expect(engine.machine.listTaskLogs(jobId, taskId, { limit: 0 })).rejects.toBeInstanceOf(ValidationError);
  await expect(engine.machine.listTaskLogs(jobId, taskId, { limit: 1001 })).rejects.toBeInstanceOf(ValidationError);
  await expect(engine.machine.listTaskLogs(jobId, taskId, { afterSeq: -1 })).rejects.toBeInstanceOf(ValidationError);
  await expect(engine.machine.listTaskLogs(jobId, `${jobId}-s1-t9`)).rejects.toBeInstanceOf(TaskNotFoundError);
  // The task exists, but not in this job.
  const other = await finished('logs.job', { tasks: 1, lines: 1, run: 'paging-other' });
  await expect(engine.machine.listTaskLogs(other, taskId)).rejects.toBeInstanceOf(TaskNotFoundError);
});

test('an attempt keeps its newest lines over the line cap and the byte cap, and counts what it dropped', async () => {
  const jobId = await finished('logs.job', { tasks: 1, lines: 150, run: 'line-cap' });
  const page = await allLines(jobId, `${jobId}-s1-t0`);
  expect(page.lines).toHaveLength(TASK_LOG_LIMITS.linesPerAttempt);
  expect(page.lines[0]?.message).toBe('t0 51');
  expect(page.lines.at(-1)?.message).toBe('t0 150');
  expect(page).toMatchObject({ recorded: 100, dropped: 50 });
  expect((await engine.machine.listTasks(jobId))[0]?.logs).toEqual({ lines: 100, dropped: 50 });

  // 4,000-byte messages: the attempt's 64 KiB keep the newest fifteen or so.
  const big = await finished('logs.job', { tasks: 1, lines: 40, bytes: 4000, run: 'byte-cap' });
  const bigPage = await allLines(big, `${big}-s1-t0`);
  const kept = bigPage.lines.length;
  expect(kept).toBeGreaterThanOrEqual(14);
  expect(kept).toBeLessThan(40);
  expect(bigPage.lines.reduce((sum, line) => sum + Buffer.byteLength(line.message) + Buffer.byteLength(JSON.stringify(line.fields)), 0)).toBeLessThanOrEqual(
    TASK_LOG_LIMITS.bytesPerAttempt,
  );
  expect(bigPage.lines.at(-1)?.message.startsWith('t0 40x')).toBe(true);
  expect(bigPage.dropped).toBe(40 - kept);
});

test('a job keeps its newest lines over its cap: the oldest are deleted and counted', async () => {
  const jobId = await finished('logs.over_cap', { extra: 50 }, 'COMPLETED');
  const kept = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.task_logs WHERE job_id = $1', [jobId]);
  expect(kept.rows[0]?.n).toBe(TASK_LOG_LIMITS.linesPerJob);
  const more = await allLines(jobId, `${jobId}-s2-t0`);
  expect(more.lines).toHaveLength(50);
  expect(more.jobDropped).toBe(50);
  // What went were stage 1's oldest: each task that lost lines lost its first ones, none of its last.
  const losses = await db.pool.query<{ task_id: string; kept: number; first: number }>(
    `SELECT task_id, count(*)::int AS kept, min(seq) AS first FROM coremachine.task_logs WHERE job_id = $1 AND task_id LIKE '%-s1-%' GROUP BY task_id`,
    [jobId],
  );
  const lossy = losses.rows.filter((row) => row.kept < 100);
  expect(lossy.reduce((sum, row) => sum + (100 - row.kept), 0) + (100 - losses.rows.length) * 100).toBe(50);
  for (const row of lossy) expect(row.first).toBe(100 - row.kept + 1);
  // The per-task count says what was recorded; the job's count says what its cap took since.
  expect((await allLines(jobId, `${jobId}-s1-t0`)).jobDropped).toBe(50);
});

test('a failed attempt and a retried one keep their lines, numbered across attempts', async () => {
  const jobId = await finished('logs.retried', { run: 'retry' });
  const page = await allLines(jobId, `${jobId}-s1-t0`);
  expect(page.lines.map((line) => [line.seq, line.attempt, line.level, line.message])).toEqual([
    [1, 1, 'warn', 'attempt 1 starts'],
    [2, 2, 'warn', 'attempt 2 starts'],
    [3, 2, 'info', 'second attempt works'],
  ]);

  const failed = await finished('logs.retried', { run: 'permanent' }, 'FAILED');
  const failedPage = await allLines(failed, `${failed}-s1-t0`);
  expect(failedPage.lines.map((line) => [line.attempt, line.message, line.fields])).toEqual([[1, 'attempt 1 starts', { attempt: 1 }]]);
});

test('hostile lines are bounded or made storable, never fail the task, and say what was left out', async () => {
  const jobId = await finished('logs.hostile', {});
  const page = await allLines(jobId, `${jobId}-s1-t0`);
  const [nul, surrogate, huge, bigFields, bigint, cycle, fn, nulKey, unknownLevel, symbol, nullProto, multiline] = page.lines;
  expect(nul?.message).toBe('nul \\u0000 here');
  expect(surrogate?.message).toBe('lone \ufffd surrogate');
  expect(Buffer.byteLength(huge?.message ?? '')).toBeLessThanOrEqual(TASK_LOG_LIMITS.messageBytes);
  expect(huge?.message).toMatch(/^m+ … \[cut from 10485760 characters\]$/);
  expect(bigFields).toMatchObject({
    fields: null,
    message: expect.stringMatching(/^big fields \[fields left out: \d+ bytes of JSON, over the 4096-byte limit\]$/) as string,
  });
  expect(bigint).toMatchObject({ fields: null, message: expect.stringContaining('bigint fields [fields left out:') as string });
  expect(cycle).toMatchObject({ fields: null, message: expect.stringContaining('cyclic fields [fields left out:') as string });
  expect(fn).toMatchObject({ fields: null, message: 'function fields [fields left out: they are not a JSON object]' });
  expect(nulKey).toMatchObject({ fields: { 'a\\u0000b': 1 }, message: 'nul in a key' });
  expect(unknownLevel).toMatchObject({ level: 'info', message: 'unknown level [level is not one of debug, info, warn, error: logged as info]' });
  expect(symbol?.message).toBe('Symbol(not text)');
  expect(nullProto?.message).toMatch(/^\[message could not be turned into text: /);
  expect(multiline).toMatchObject({ level: 'error', message: 'multi\nline \u001b[31m' });
  expect(page.lines).toHaveLength(12);
});

test('a remote worker sends lines with complete and fail: validated, bounded, kept across attempts', async () => {
  const { job } = await engine.machine.submitJob('logs.remote', { run: 'remote' });
  const claim = async () => {
    for (let i = 0; i < 500; i++) {
      const [task] = await engine.machine.remote.claim({ workerId: 'w1', taskTypes: ['logs.remote_task'] });
      if (task) return task;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error('nothing to claim');
  };
  const first = await claim();
  const failure = { claimId: first.claimId, error: { message: 'out of memory' } };
  // Over a bound: refused, nothing recorded, the claim still the worker's.
  for (const logs of [
    [{ level: 'fatal', message: 'x' }],
    [{ level: 'info', message: 'é'.repeat(TASK_LOG_LIMITS.messageBytes) }],
    [{ level: 'info', message: 'x', fields: { blob: 'b'.repeat(TASK_LOG_LIMITS.fieldsBytes) } }],
    [{ level: 'info', message: 'x', fields: 'not an object' }],
    [{ level: 'info', message: 'x', at: 'yesterday' }],
    Array.from({ length: TASK_LOG_LIMITS.linesPerAttempt + 1 }, () => ({ level: 'info', message: 'x' })),
  ]) {
    await expect(engine.machine.remote.fail(first.taskId, { ...failure, logs })).rejects.toBeInstanceOf(ValidationError);
  }
  await expect(engine.machine.remote.fail(first.taskId, { ...failure, logsDropped: -1 })).rejects.toBeInstanceOf(ValidationError);
  await engine.machine.remote.fail(first.taskId, {
    ...failure,
    logs: [{ level: 'error', message: 'allocating', fields: { gb: 80 }, at: '2024-05-01T10:00:00.000Z' }],
    logsDropped: 7,
  });
  const second = await claim();
  await engine.machine.remote.complete(second.taskId, { claimId: second.claimId, result: { ok: true }, logs: [{ level: 'info', message: 'done' }] });
  expect((await waitForJob(engine.machine, job.jobId)).status).toBe('COMPLETED');
  const page = await allLines(job.jobId, first.taskId);
  expect(page.lines.map((line) => [line.seq, line.attempt, line.level, line.message, line.fields])).toEqual([
    [1, 1, 'error', 'allocating', { gb: 80 }],
    [2, 2, 'info', 'done', null],
  ]);
  expect(page.lines[0]?.loggedAt.toISOString()).toBe('2024-05-01T10:00:00.000Z');
  expect(page).toMatchObject({ recorded: 2, dropped: 7 });
});

/** A pool whose every statement's text is recorded, from its first connection on. */
function recordingPool(): { pool: pg.Pool; statements: string[] } {
  const pool = db.newPool(4);
  const statements: string[] = [];
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (config: unknown, ...rest: unknown[]) => {
      statements.push(typeof config === 'string' ? config : ((config as { text?: string }).text ?? ''));
      return query(config, ...rest);
    };
  });
  return { pool, statements };
}

test('a handler that never logs costs no log statement; one that logs costs one insert per commit, not per line', async () => {
  const { pool, statements } = recordingPool();
  const counted = await startEngine(pool);
  try {
    const { job } = await counted.machine.submitJob('logs.silent', { n: 20 });
    expect((await waitForJob(counted.machine, job.jobId)).status).toBe('COMPLETED');
    expect(statements.length).toBeGreaterThan(20);
    expect(statements.filter((text) => /task_log|job_log/.test(text))).toEqual([]);

    statements.length = 0;
    const { job: loud } = await counted.machine.submitJob('logs.job', { tasks: 6, lines: 30, run: 'counted' });
    expect((await waitForJob(counted.machine, loud.jobId)).status).toBe('COMPLETED');
    const inserts = statements.filter((text) => text.includes('INSERT INTO coremachine.task_logs'));
    expect(inserts.length).toBeGreaterThanOrEqual(1);
    expect(inserts.length).toBeLessThanOrEqual(6);
    expect((await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.task_logs WHERE job_id = $1', [loud.jobId])).rows[0]?.n).toBe(180);
    // Under its cap a job's lines are never trimmed: no delete was tried.
    expect(statements.filter((text) => text.includes('DELETE FROM coremachine.task_logs'))).toEqual([]);
  } finally {
    await counted.stop();
  }
});
