/**
 * Task logs from the outside, against `coremachine dev`: GET jobs/{jobId}/tasks/{taskId}/logs
 * (paging, validation, 404), `coremachine logs` (hostile text folded and made visible), and
 * retention and DELETE jobs/{jobId} taking the lines with the job, counted.
 */
import type pg from 'pg';
import { z } from 'zod';
import { defineJob, defineTask } from '../models';
import { runCliCaptured } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { waitForJob } from './support/harness';
import { appRegistry } from './support/registry';

const KEY = 'task-logs-key';
const EVIL = 'ok \x1b[2J\rjob COMPLETED \x9b31m\nstatus    COMPLETED';

const talker = (type: string) =>
  defineTask({
    type,
    parameters: z.object({ lines: z.number().int(), tag: z.string() }),
    handler: ({ lines, tag }, ctx) => {
      for (let i = 1; i <= lines; i++) ctx.log(i % 2 === 0 ? 'warn' : 'info', `${tag} line ${i}`, { i });
      return {};
    },
  });
const twoStages = defineJob({ type: 'logs_api.two_stages', parameters: z.object({ lines: z.number().int(), run: z.string() }) })
  .stage({
    name: 'first',
    task: talker('logs_api.first'),
    // Task 1 stays silent: it has no lines, and the CLI does not ask for them.
    fanOut: ({ parameters }) => [0, 1, 2].map((i) => ({ lines: i === 1 ? 0 : parameters.lines, tag: `s1t${i}` })),
  })
  .stage({ name: 'second', task: talker('logs_api.second'), fanOut: ({ parameters }) => [{ lines: parameters.lines, tag: 's2t0' }] })
  .finalize(() => ({}));
const evil = defineJob({ type: 'logs_api.evil', parameters: z.object({}) })
  .stage({
    name: 'evil',
    task: defineTask({
      type: 'logs_api.evil_task',
      parameters: z.object({}),
      handler: (_parameters, ctx) => {
        ctx.log('error', EVIL, { note: EVIL });
        return {};
      },
    }),
    fanOut: () => [{}],
  })
  .finalize(() => ({}));

// Retention is swept by hand and counted: the dev server's own janitor must not sweep the backdated jobs first.
const dev = useDevServer(appRegistry(twoStages, evil), {
  functionKey: KEY,
  env: { COREMACHINE_RETENTION_DAYS: '30', COREMACHINE_JANITOR_INTERVAL_SECONDS: '3600' },
});

async function finishedJob(jobType: string, parameters: unknown): Promise<string> {
  const { job } = await dev.runtime.machine.submitJob(jobType, parameters);
  expect((await waitForJob(dev.runtime.machine, job.jobId)).status).toBe('COMPLETED');
  return job.jobId;
}

async function get(path: string, withKey = true): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${dev.server.url}/api/${path}`, { headers: withKey ? { 'x-functions-key': KEY } : {} });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const cli = (args: string[]) => runCliCaptured(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY } });

async function logRows(pool: pg.Pool, jobId: string): Promise<Record<'task_logs' | 'task_log_counts' | 'job_log_counts', number>> {
  const count = async (table: string) =>
    (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM coremachine.${table} WHERE job_id = $1`, [jobId])).rows[0]?.n ?? -1;
  return { task_logs: await count('task_logs'), task_log_counts: await count('task_log_counts'), job_log_counts: await count('job_log_counts') };
}

test('GET jobs/{jobId}/tasks/{taskId}/logs pages a task’s lines; the task listing shows its counts; bad input is a 400, an unknown task a 404', async () => {
  const jobId = await finishedJob('logs_api.two_stages', { lines: 5, run: 'api' });
  const taskId = `${jobId}-s1-t0`;
  const first = await get(`jobs/${jobId}/tasks/${taskId}/logs?limit=2`);
  expect(first.status).toBe(200);
  expect(first.body).toMatchObject({ jobId, taskId, recorded: 5, dropped: 0, jobDropped: 0, nextAfterSeq: 2 });
  expect(first.body.lines).toEqual([
    { seq: 1, attempt: 1, level: 'info', message: 's1t0 line 1', fields: { i: 1 }, loggedAt: expect.stringMatching(/^\d{4}-/) as string },
    { seq: 2, attempt: 1, level: 'warn', message: 's1t0 line 2', fields: { i: 2 }, loggedAt: expect.stringMatching(/^\d{4}-/) as string },
  ]);
  const rest = await get(`jobs/${jobId}/tasks/${taskId}/logs?afterSeq=2`);
  expect((rest.body.lines as Array<{ seq: number }>).map((line) => line.seq)).toEqual([3, 4, 5]);
  expect(rest.body.nextAfterSeq).toBeNull();

  // A task that never logged: found, no lines; the listing says which tasks logged.
  expect((await get(`jobs/${jobId}/tasks/${jobId}-s1-t1/logs`)).body).toMatchObject({ lines: [], recorded: 0 });
  const listed = await get(`jobs/${jobId}/tasks?stage=1`);
  expect((listed.body.tasks as Array<{ logs?: unknown }>).map((task) => task.logs)).toEqual([{ lines: 5, dropped: 0 }, undefined, { lines: 5, dropped: 0 }]);

  for (const query of ['limit=0', 'limit=1001', 'afterSeq=-1', 'afterSeq=1.5', 'limit=abc']) {
    const bad = await get(`jobs/${jobId}/tasks/${taskId}/logs?${query}`);
    expect({ query, status: bad.status, type: (bad.body.error as { type: string }).type }).toEqual({ query, status: 400, type: 'ValidationError' });
  }
  expect((await get(`jobs/${jobId}/tasks/not-a-task/logs`)).status).toBe(400);
  expect((await get(`jobs/${'0'.repeat(64)}/tasks/${taskId}/logs`)).status).toBe(404);
  const unknown = await get(`jobs/${jobId}/tasks/${jobId}-s1-t7/logs`);
  expect(unknown.status).toBe(404);
  expect((unknown.body.error as { type: string }).type).toBe('TaskNotFoundError');
  expect((await get(`jobs/${jobId}/tasks/${taskId}/logs`, false)).status).toBe(401);
});

test('coremachine logs prints a job’s lines task by task, one stage, or one task by its short id; --json the pages', async () => {
  const jobId = await finishedJob('logs_api.two_stages', { lines: 2, run: 'cli' });
  const all = await cli(['logs', jobId]);
  expect(all).toMatchObject({ code: 0, stderr: '' });
  const lines = all.stdout.trimEnd().split('\n');
  expect(lines.map((line) => line.replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/, 'T'))).toEqual([
    's1-t0  T  INFO   a1  s1t0 line 1  {"i":1}',
    's1-t0  T  WARN   a1  s1t0 line 2  {"i":2}',
    's1-t2  T  INFO   a1  s1t2 line 1  {"i":1}',
    's1-t2  T  WARN   a1  s1t2 line 2  {"i":2}',
    's2-t0  T  INFO   a1  s2t0 line 1  {"i":1}',
    's2-t0  T  WARN   a1  s2t0 line 2  {"i":2}',
  ]);
  const stage = await cli(['logs', jobId, '--stage', '2']);
  expect(
    stage.stdout
      .trimEnd()
      .split('\n')
      .map((line) => line.slice(0, 5)),
  ).toEqual(['s2-t0', 's2-t0']);
  const task = await cli(['logs', jobId, '--task', 's1-t2']);
  expect(task.stdout).toContain('s1t2 line 2');
  expect(task.stdout).not.toContain('s1t0');
  const silent = await cli(['logs', jobId, '--task', `${jobId}-s1-t1`]);
  expect(silent).toMatchObject({ code: 0, stdout: 'no log lines\n' });
  const json = await cli(['logs', jobId, '--task', 's2-t0', '--json']);
  expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ taskId: `${jobId}-s2-t0`, recorded: 2, lines: expect.any(Array) as unknown[] })]);

  expect((await cli(['logs', jobId, '--task', 's1-t9'])).code).toBe(1);
  expect((await cli(['logs', jobId, '--task', 's1-t0', '--stage', '1'])).code).toBe(2);
  expect((await cli(['logs'])).code).toBe(2);
});

test('coremachine logs folds a hostile line to one and makes its control characters visible', async () => {
  const jobId = await finishedJob('logs_api.evil', {});
  const run = await cli(['logs', jobId]);
  expect(run.code).toBe(0);
  // One line for the one log line: the newline in the message did not start a line of its own.
  expect(run.stdout.trimEnd().split('\n')).toHaveLength(1);
  expect(run.stdout).toContain('ok \\u001b[2J\\u000djob COMPLETED \\u009b31m status    COMPLETED');
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  expect(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(run.stdout)).toBe(false);
  expect(run.stdout).not.toMatch(/^status\s+COMPLETED/m);
});

test('DELETE jobs/{jobId} and retention take a job’s log lines with it, counted', async () => {
  const deleted = await finishedJob('logs_api.two_stages', { lines: 3, run: 'delete' });
  expect(await logRows(dev.db.pool, deleted)).toEqual({ task_logs: 9, task_log_counts: 3, job_log_counts: expect.any(Number) as number });
  const response = await fetch(`${dev.server.url}/api/jobs/${deleted}`, { method: 'DELETE', headers: { 'x-functions-key': KEY } });
  expect(response.status).toBe(200);
  expect(((await response.json()) as { deleted: Record<string, number> }).deleted).toMatchObject({ jobs: 1, tasks: 4, taskLogs: 9 });
  expect(await logRows(dev.db.pool, deleted)).toEqual({ task_logs: 0, task_log_counts: 0, job_log_counts: 0 });

  const expired = await finishedJob('logs_api.two_stages', { lines: 4, run: 'retention' });
  const alsoExpired = await finishedJob('logs_api.two_stages', { lines: 4, run: 'retention-2' });
  const kept = await finishedJob('logs_api.two_stages', { lines: 4, run: 'kept' });
  await dev.db.pool.query("UPDATE coremachine.jobs SET finished_at = now() - interval '31 days' - make_interval(secs => $2) WHERE job_id = $1", [expired, 1]);
  await dev.db.pool.query("UPDATE coremachine.jobs SET finished_at = now() - interval '31 days' WHERE job_id = $1", [alsoExpired]);
  // A batch is sized by the rows it deletes, log lines included: 4 tasks and 12 lines are over 10, so the second job waits.
  const bounded = await dev.runtime.machine.sweep({ retention: { tasksPerBatch: 10, maxBatches: 1 } });
  expect(bounded.purged).toMatchObject({ jobs: 1, tasks: 4, taskLogs: 12, batches: 1 });
  expect(await logRows(dev.db.pool, expired)).toEqual({ task_logs: 0, task_log_counts: 0, job_log_counts: 0 });
  expect((await logRows(dev.db.pool, alsoExpired)).task_logs).toBe(12);
  expect((await dev.runtime.machine.sweep()).purged).toMatchObject({ jobs: 1, taskLogs: 12 });
  expect(await logRows(dev.db.pool, alsoExpired)).toEqual({ task_logs: 0, task_log_counts: 0, job_log_counts: 0 });
  expect((await logRows(dev.db.pool, kept)).task_logs).toBe(12);

  const cliDelete = await cli(['delete', kept]);
  expect(cliDelete.stdout).toContain('12 log line(s)');
});
