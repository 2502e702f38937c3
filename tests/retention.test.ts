/**
 * Retention and delete: finished jobs past COREMACHINE_RETENTION_DAYS are deleted by the janitor
 * with every row they left, in bounded batches that skip locked jobs; an operator deletes one
 * finished job over HTTP or with `coremachine delete`. Ages are backdated in SQL, as the lease tests do.
 */
import type pg from 'pg';
import { z } from 'zod';
import { appRegistry } from './support/registry';
import { defineJob, defineTask, TaskFailure } from '../models';
import { runCliCaptured } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { captureLogger, waitForJob } from './support/harness';

const KEY = 'retention-test-key';

let openGate: () => void = () => undefined;
const gate = new Promise<void>((resolve) => (openGate = resolve));
const gated = defineJob({ type: 'test.retention_gated', parameters: z.object({ run: z.string() }) })
  .stage({
    name: 'held',
    task: defineTask({
      type: 'test.retention.held',
      parameters: z.object({ index: z.number().int() }),
      handler: async ({ index }, ctx) => {
        await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
        if (ctx.signal.aborted) throw new Error(`task ${index} aborted`);
        return { index };
      },
    }),
    fanOut: () => [{ index: 0 }, { index: 1 }],
  })
  .finalize(({ previous }) => ({ tasks: previous.count }));
const failing = defineJob({ type: 'test.retention_failing', parameters: z.object({ run: z.string() }) })
  .stage({
    name: 'fail',
    task: defineTask({
      type: 'test.retention.fail',
      parameters: z.object({ index: z.number().int() }),
      handler: ({ index }) => Promise.reject(new TaskFailure(`task ${index} cannot work`, { nonRetryable: true })),
    }),
    fanOut: () => [{ index: 0 }, { index: 1 }, { index: 2 }],
  })
  .finalize(() => ({}));

const logs: string[] = [];
const dev = useDevServer(appRegistry(gated, failing), {
  functionKey: KEY,
  // The tests sweep by hand and count what each sweep deleted: the dev server's own janitor (every
  // 10 s by default) would delete the same backdated jobs between a test's steps.
  env: { COREMACHINE_RETENTION_DAYS: '30', COREMACHINE_JANITOR_INTERVAL_SECONDS: '3600' },
  logger: captureLogger(logs),
  beforeClose: () => openGate(),
});

const TABLES = ['jobs', 'stages', 'tasks', 'events', 'dead_letters', 'outbox'] as const;
type Rows = Record<(typeof TABLES)[number], number>;

async function rowsOf(pool: pg.Pool, jobIds: readonly string[]): Promise<Rows> {
  const counts = {} as Rows;
  for (const table of TABLES) {
    const result = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM coremachine.${table} WHERE job_id = ANY($1::text[])`, [jobIds]);
    counts[table] = result.rows[0]?.n ?? -1;
  }
  return counts;
}

async function finishedJob(jobType: string, parameters: unknown, status: string): Promise<string> {
  const { job } = await dev.runtime.machine.submitJob(jobType, parameters);
  const done = await waitForJob(dev.runtime.machine, job.jobId);
  expect(done.status).toBe(status);
  return job.jobId;
}

/** Cancelled once its two tasks exist (a cancel that wins the race with the stage start leaves none). */
async function cancelledJob(run: string): Promise<string> {
  const { job } = await dev.runtime.machine.submitJob('test.retention_gated', { run });
  await tasksCreated(job.jobId, 2);
  await dev.runtime.machine.cancelJob(job.jobId);
  return job.jobId;
}

async function tasksCreated(jobId: string, n: number, status?: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const found = await dev.db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND ($2::text IS NULL OR status = $2)',
      [jobId, status ?? null],
    );
    if (found.rows[0]?.n === n) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`job ${jobId} never had ${n} ${status ?? ''} task(s)`);
}

/** Makes jobs look finished `days` ago. */
async function age(jobIds: readonly string[], days: number): Promise<void> {
  await dev.db.pool.query('UPDATE coremachine.jobs SET finished_at = now() - make_interval(days => $2) WHERE job_id = ANY($1::text[])', [jobIds, days]);
}

test('a sweep deletes finished jobs past retention with all their rows, writes no events, and keeps everything else', async () => {
  const completed = await finishedJob('hello_world', { n: 20 }, 'COMPLETED');
  const failed = await finishedJob('test.retention_failing', { run: 'old' }, 'FAILED');
  const cancelled = await cancelledJob('old');
  const recent = await finishedJob('hello_world', { n: 21 }, 'COMPLETED');
  const running = (await dev.runtime.machine.submitJob('test.retention_gated', { run: 'running' })).job.jobId;
  // Its two tasks held PROCESSING before the snapshot: a claim during the sweep would add events
  // to the rows this test expects the sweep to leave untouched.
  await tasksCreated(running, 2, 'PROCESSING');
  // A dead letter and an undispatched outbox row belong to a job too.
  await dev.db.pool.query(`INSERT INTO coremachine.dead_letters (queue, reason, description, job_id) VALUES ('coremachine-tasks', 'Test', 'left behind', $1)`, [
    failed,
  ]);
  await dev.db.pool.query(`INSERT INTO coremachine.outbox (kind, job_id, payload) VALUES ('job', $1, '{}')`, [completed]);
  const old = [completed, failed, cancelled];
  await age(old, 31);
  await age([recent], 29);
  const before = await rowsOf(dev.db.pool, old);
  const keptBefore = await rowsOf(dev.db.pool, [recent, running]);
  const eventsBefore = (await dev.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.events')).rows[0]?.n ?? 0;
  expect(before).toMatchObject({ jobs: 3, dead_letters: 1, outbox: 1 });
  expect(before.tasks).toBe(20 * 2 + 3 + 2);

  const report = await dev.runtime.machine.sweep();

  expect(report.purged).toEqual({
    jobs: 3,
    stages: before.stages,
    tasks: before.tasks,
    events: before.events,
    deadLetters: 1,
    outbox: 1,
    taskLogs: 0,
    // No payload store in `coremachine dev` by default: no blobs to delete.
    blobsDeleted: 0,
    blobsLeft: 0,
    batches: 1,
  });
  expect(await rowsOf(dev.db.pool, old)).toEqual({ jobs: 0, stages: 0, tasks: 0, events: 0, dead_letters: 0, outbox: 0 });
  expect(await rowsOf(dev.db.pool, [recent, running])).toEqual(keptBefore);
  // The event triggers fire on INSERT and UPDATE only: deleting wrote no events of its own.
  const eventsAfter = (await dev.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.events')).rows[0]?.n ?? 0;
  expect(eventsAfter).toBe(eventsBefore - before.events);
  expect(logs.some((line) => line.includes('janitor deleted finished jobs past retention') && line.includes('"jobs":3'))).toBe(true);

  await dev.runtime.machine.cancelJob(running);
  await dev.runtime.machine.deleteJob(running);
  await dev.runtime.machine.deleteJob(recent);
});

test('one sweep deletes a bounded number of batches; the next sweep carries on', async () => {
  const ids: string[] = [];
  for (let n = 1; n <= 5; n++) ids.push(await finishedJob('hello_world', { n: 100 + n }, 'COMPLETED'));
  await age(ids, 40);
  const first = await dev.runtime.machine.sweep({ retention: { jobsPerBatch: 2, maxBatches: 2 } });
  expect(first.purged).toMatchObject({ jobs: 4, batches: 2 });
  // Oldest first: the job finished most recently is the one left.
  expect((await rowsOf(dev.db.pool, ids)).jobs).toBe(1);
  const second = await dev.runtime.machine.sweep({ retention: { jobsPerBatch: 2, maxBatches: 2 } });
  expect(second.purged).toMatchObject({ jobs: 1, batches: 1 });
  expect(await rowsOf(dev.db.pool, ids)).toMatchObject({ jobs: 0, tasks: 0 });
});

test('a batch stops adding jobs at the task bound, but always takes at least one', async () => {
  const ids: string[] = [];
  for (let n = 1; n <= 3; n++) ids.push(await finishedJob('hello_world', { n: 200 + n }, 'COMPLETED'));
  await age(ids, 40);
  const report = await dev.runtime.machine.sweep({ retention: { tasksPerBatch: 1, maxBatches: 2 } });
  expect(report.purged).toMatchObject({ jobs: 2, batches: 2 });
  expect((await dev.runtime.machine.sweep()).purged).toMatchObject({ jobs: 1, batches: 1 });
});

test('a job another transaction holds is skipped, not waited for; retention 0 keeps everything', async () => {
  const held = await finishedJob('hello_world', { n: 301 }, 'COMPLETED');
  await age([held], 40);
  expect((await dev.runtime.machine.sweep({ retentionDays: 0 })).purged.jobs).toBe(0);
  const other = await dev.db.pool.connect();
  try {
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM coremachine.jobs WHERE job_id = $1 FOR UPDATE', [held]);
    expect((await dev.runtime.machine.sweep()).purged.jobs).toBe(0);
    await other.query('COMMIT');
  } finally {
    other.release();
  }
  expect((await dev.runtime.machine.sweep()).purged.jobs).toBe(1);
  expect((await rowsOf(dev.db.pool, [held])).jobs).toBe(0);
});

async function httpDelete(
  jobId: string,
  withKey = true,
): Promise<{ status: number; body: { error?: { type: string; message: string; issues?: unknown[] }; jobId?: string; deleted?: Record<string, number> } }> {
  const response = await fetch(`${dev.server.url}/api/jobs/${encodeURIComponent(jobId)}`, {
    method: 'DELETE',
    headers: withKey ? { 'x-functions-key': KEY } : {},
  });
  return { status: response.status, body: (await response.json()) as never };
}

test('DELETE /api/jobs/{jobId}: 200 with every row gone for a finished job, 409 while it runs, 404 unknown, 400 malformed, 401 without the key', async () => {
  const { job } = await dev.runtime.machine.submitJob('test.retention_gated', { run: 'http' });
  await waitFor(async () => (await dev.runtime.machine.getJob(job.jobId)).status === 'PROCESSING');
  expect((await httpDelete(job.jobId, false)).status).toBe(401);
  const busy = await httpDelete(job.jobId);
  expect(busy.status).toBe(409);
  expect(busy.body.error?.type).toBe('InvalidTransitionError');
  expect((await rowsOf(dev.db.pool, [job.jobId])).jobs).toBe(1);

  await dev.runtime.machine.cancelJob(job.jobId);
  await dev.db.pool.query(`INSERT INTO coremachine.outbox (kind, job_id, payload) VALUES ('job', $1, '{}')`, [job.jobId]);
  const before = await rowsOf(dev.db.pool, [job.jobId]);
  const deleted = await httpDelete(job.jobId);
  expect(deleted.status).toBe(200);
  expect(deleted.body).toEqual({
    jobId: job.jobId,
    deleted: {
      jobs: 1,
      stages: before.stages,
      tasks: before.tasks,
      events: before.events,
      deadLetters: 0,
      outbox: 1,
      taskLogs: 0,
      blobsDeleted: 0,
      blobsLeft: 0,
    },
  });
  expect(await rowsOf(dev.db.pool, [job.jobId])).toEqual({ jobs: 0, stages: 0, tasks: 0, events: 0, dead_letters: 0, outbox: 0 });

  const again = await httpDelete(job.jobId);
  expect(again.status).toBe(404);
  expect(again.body.error?.type).toBe('JobNotFoundError');
  const malformed = await httpDelete('not-a-job-id');
  expect(malformed.status).toBe(400);
  expect(malformed.body.error?.type).toBe('ValidationError');
  expect(malformed.body.error?.issues).toEqual([expect.objectContaining({ path: ['jobId'] })]);
});

test('coremachine delete <jobId> deletes a finished job and says what went; an unknown job exits 1', async () => {
  const jobId = await finishedJob('hello_world', { n: 7 }, 'COMPLETED');
  const run = (args: string[]) => runCliCaptured(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY } });
  const first = await run(['delete', jobId]);
  expect(first).toMatchObject({ code: 0, stderr: '' });
  expect(first.stdout).toMatch(new RegExp(`deleted job ${jobId}: 2 stage\\(s\\), 14 task\\(s\\)`));
  expect((await rowsOf(dev.db.pool, [jobId])).jobs).toBe(0);
  const second = await run(['delete', jobId]);
  expect(second.code).toBe(1);
  expect(second.stderr).toMatch(/does not exist/);
});

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
