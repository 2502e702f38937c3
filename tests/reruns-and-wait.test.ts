import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { ValidationError } from '../core/errors';
import { computeJobId } from '../core/identity';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { appRegistry } from './support/registry';
import { defineJob, defineSchedule, defineTask } from '../models';
import { runCliCaptured, type CliRun } from './support/cli-run';
import { useDevServer } from './support/dev-server';

// Issue 12 over the API a user sees: Idempotency-Key re-runs, the waitSeconds long-poll and
// `submit --wait`, and the schedule routes and CLI commands, against `coremachine dev`.

const KEY = 'reruns-test-key';
let openGate: () => void = () => undefined;
let gate = new Promise<void>((resolve) => (openGate = resolve));
const held = defineTask({
  type: 'test.wait.held',
  parameters: z.object({ fail: z.boolean() }),
  handler: async ({ fail }, ctx) => {
    await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
    if (fail) throw new Error('asked to fail');
    return { ok: true };
  },
});
const heldJob = defineJob({ type: 'test.wait_held', parameters: z.object({ run: z.string(), fail: z.boolean().default(false) }) })
  .stage({ name: 'held', task: held, fanOut: ({ parameters }) => [{ fail: parameters.fail }] })
  .finalize(() => ({ done: true }));
const nightly = defineSchedule({ name: 'nightly_hello', cron: '0 2 * * *', timezone: 'Europe/Berlin', jobType: 'hello_world', parameters: { n: 2 } });

const dev = useDevServer(appRegistry(heldJob).registerSchedule(nightly), {
  functionKey: KEY,
  beforeClose: async () => {
    openGate();
    await dev.runtime.worker.drain();
  },
});
afterEach(async () => {
  // Each test holds its jobs until it opens the gate; the next test gets a fresh one.
  openGate();
  await dev.runtime.worker.drain();
  gate = new Promise<void>((resolve) => (openGate = resolve));
});

async function api(method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${dev.server.url}/api/${path}`, {
    method,
    headers: { 'x-functions-key': KEY, 'content-type': 'application/json', ...options.headers },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown> & { error?: { type: string; issues?: Array<{ path: unknown[] }> } },
  };
}
const jobCount = async () => (await dev.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs')).rows[0]?.n;

function cli(args: string[]): Promise<CliRun> {
  return runCliCaptured(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY }, pollIntervalMs: 30 });
}

describe('Idempotency-Key', () => {
  test('without a key the job id is exactly what it always was', async () => {
    // Computed by the code before keys existed: SHA-256("hello_world" NUL '{"n":3}').
    const before = '372d26fac9f2c269a01e062b749957aa4f425d937856329aa5799fc74fe87eb5';
    expect(computeJobId('hello_world', { n: 3 })).toBe(before);
    const submitted = await api('POST', 'jobs/hello_world', { body: { n: 3 } });
    expect(submitted).toMatchObject({ status: 202, body: { jobId: before, idempotencyKey: null } });
  });

  test('same key and parameters → the same job (200); another key → a new job (202); the key is on the job', async () => {
    const keyless = computeJobId('hello_world', { n: 4 });
    const first = await api('POST', 'jobs/hello_world', { body: { n: 4 }, headers: { 'Idempotency-Key': 'run-2026-11-30' } });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ idempotencyKey: 'run-2026-11-30' });
    expect(first.body.jobId).not.toBe(keyless);
    const again = await api('POST', 'jobs/hello_world', { body: { n: 4 }, headers: { 'Idempotency-Key': 'run-2026-11-30' } });
    expect(again).toMatchObject({ status: 200, body: { jobId: first.body.jobId } });
    const other = await api('POST', 'jobs/hello_world', { body: { n: 4 }, headers: { 'Idempotency-Key': 'run-2026-12-01' } });
    expect(other.status).toBe(202);
    expect(new Set([keyless, first.body.jobId, other.body.jobId]).size).toBe(3);
    expect((await api('GET', `jobs/${String(other.body.jobId)}`)).body).toMatchObject({ idempotencyKey: 'run-2026-12-01' });
  });

  test('an empty, too long or non-ASCII key is a 400 naming the header, and nothing is stored', async () => {
    const before = await jobCount();
    for (const bad of ['', 'k'.repeat(201), 'clé']) {
      const reply = await api('POST', 'jobs/hello_world', { body: { n: 5 }, headers: { 'Idempotency-Key': bad } });
      expect(reply.status).toBe(400);
      expect(reply.body.error?.type).toBe('ValidationError');
      expect(reply.body.error?.issues?.[0]?.path[0]).toBe('Idempotency-Key');
    }
    // A NUL cannot travel in an HTTP header, but the engine refuses it from any caller.
    await expect(dev.runtime.machine.submitJob('hello_world', { n: 5 }, { idempotencyKey: 'a\u0000b' })).rejects.toBeInstanceOf(ValidationError);
    expect(await api('POST', 'jobs/hello_world', { body: { n: 5 }, headers: { 'Idempotency-Key': 'k'.repeat(200) } })).toMatchObject({ status: 202 });
    expect(await jobCount()).toBe((before ?? 0) + 1);
  });

  test('a Service Bus submission with idempotencyKey is the same job as the HTTP one with that header; a bad key is dead-lettered', async () => {
    const viaHttp = await api('POST', 'jobs/hello_world', { body: { n: 6 }, headers: { 'Idempotency-Key': 'nightly-42' } });
    const before = await jobCount();
    dev.runtime.transport.submissions.send([
      { messageId: 'keyed', body: { jobType: 'hello_world', parameters: { n: 6 }, idempotencyKey: 'nightly-42' } },
      { messageId: 'keyed-2', body: { jobType: 'hello_world', parameters: { n: 6 }, idempotencyKey: 'nightly-43' } },
      { messageId: 'bad-key', body: { jobType: 'hello_world', parameters: { n: 6 }, idempotencyKey: '' } },
    ]);
    await dev.runtime.worker.drain();
    expect(await jobCount()).toBe((before ?? 0) + 1);
    const made = await dev.db.pool.query<{ job_id: string }>("SELECT job_id FROM coremachine.jobs WHERE idempotency_key = 'nightly-43'");
    expect(made.rows[0]?.job_id).toBe(computeJobId('hello_world', { n: 6 }, 'nightly-43'));
    expect(viaHttp.body.jobId).toBe(computeJobId('hello_world', { n: 6 }, 'nightly-42'));
    expect(dev.runtime.transport.submissions.deadLetters.map((d) => [d.messageId, d.deadLetterReason])).toEqual([['bad-key', 'ValidationError']]);
  });

  test('CLI: submit --idempotency-key runs the same parameters again under a new key', async () => {
    const a = await cli(['submit', 'hello_world', '--params', '{"n": 7}', '--idempotency-key', 'cli-a']);
    const again = await cli(['submit', 'hello_world', '--params', '{"n": 7}', '--idempotency-key', 'cli-a']);
    const b = await cli(['submit', 'hello_world', '--params', '{"n": 7}', '--idempotency-key', 'cli-b']);
    expect([a.code, again.code, b.code]).toEqual([0, 0, 0]);
    expect(a.stdout).toContain(`submitted hello_world job ${computeJobId('hello_world', { n: 7 }, 'cli-a')}`);
    expect(again.stdout).toContain('already exists');
    expect(b.stdout).toContain(`submitted hello_world job ${computeJobId('hello_world', { n: 7 }, 'cli-b')}`);
  });
});

describe('long-poll', () => {
  test('GET jobs/{id}?waitSeconds=N answers when the job ends, not after N seconds', async () => {
    const { body: job } = await api('POST', 'jobs/test.wait_held', { body: { run: 'poll-1' } });
    const waiting = api('GET', `jobs/${String(job.jobId)}?waitSeconds=60`);
    let answered = false;
    void waiting.then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(answered).toBe(false);
    openGate();
    expect(await waiting).toMatchObject({ status: 200, body: { jobId: job.jobId, status: 'COMPLETED', result: { done: true } } });
  });

  test('a job still running after N seconds is answered as it is, once N seconds have passed', async () => {
    const { body: job } = await api('POST', 'jobs/test.wait_held', { body: { run: 'poll-2' } });
    const started = Date.now();
    const reply = await api('GET', `jobs/${String(job.jobId)}?waitSeconds=1`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(reply.status).toBe(200);
    expect(['QUEUED', 'PROCESSING']).toContain(reply.body.status);
  });

  test('waitSeconds outside 0…60 or not a whole number is a 400 with the zod issues; an unknown job is 404', async () => {
    const { body: job } = await api('POST', 'jobs/hello_world', { body: { n: 8 } });
    for (const bad of ['61', '-1', '1.5', 'abc', '0x10', '1e1']) {
      const reply = await api('GET', `jobs/${String(job.jobId)}?waitSeconds=${bad}`);
      expect(reply.status).toBe(400);
      expect(reply.body.error?.issues?.[0]?.path).toEqual(['waitSeconds']);
    }
    expect((await api('GET', `jobs/${String(job.jobId)}?waitSeconds=0`)).status).toBe(200);
    expect((await api('GET', `jobs/${'0'.repeat(64)}?waitSeconds=5`)).body.error?.type).toBe('JobNotFoundError');
  });

  test('a waiting request holds no connection between polls: on a one-connection pool other queries still run', async () => {
    const { body: job } = await api('POST', 'jobs/test.wait_held', { body: { run: 'poll-3' } });
    const pool = dev.db.newPool(1);
    const transport = new InProcessTransport();
    const machine = await CoreMachine.create({ pool, registry: new Registry().register(heldJob), transport, logger: createLogger('silent') });
    const order: string[] = [];
    const waiting = machine.waitForJob(String(job.jobId), { waitSeconds: '3' }).then((view) => {
      order.push('wait');
      return view;
    });
    await new Promise((resolve) => setTimeout(resolve, 250));
    for (let i = 0; i < 3; i++) await pool.query('SELECT 1');
    order.push('other queries');
    expect((await waiting).status).not.toBe('COMPLETED');
    expect(order).toEqual(['other queries', 'wait']);
    await transport.close();
  });

  test('CLI: submit --wait exits 0 when the job COMPLETED and 1 when it FAILED', async () => {
    const completing = cli(['submit', 'test.wait_held', '--params', '{"run": "cli-wait-1"}', '--wait']);
    setTimeout(openGate, 200);
    const ok = await completing;
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/job COMPLETED in /);
    const failed = await cli(['submit', 'test.wait_held', '--params', '{"run": "cli-wait-2", "fail": true}', '--wait']);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/job FAILED in .*\nerror: TaskHandlerError: /);
    expect((await cli(['submit', 'hello_world', '--params', '{"n": 1}', '--wait', '--watch'])).code).toBe(2);
  });
});

describe('schedules over HTTP and the CLI', () => {
  test('GET schedules lists the declared schedules with cron, timezone, paused, next/last fire and last job', async () => {
    const reply = await api('GET', 'schedules');
    expect(reply.status).toBe(200);
    // The shipped schedule (jobs/index.ts, declared paused) is listed next to the test's own, by name.
    expect(reply.body.schedules).toEqual([
      expect.objectContaining({ name: 'hello_world_hourly', jobType: 'hello_world', paused: true, nextFireAt: null }),
      expect.objectContaining({
        name: 'nightly_hello',
        cron: '0 2 * * *',
        timezone: 'Europe/Berlin',
        jobType: 'hello_world',
        paused: false,
        lastFireAt: null,
        lastJobId: null,
        catchUpSeconds: null,
      }),
    ]);
    const [, schedule] = reply.body.schedules as Array<{ nextFireAt: string }>;
    expect(new Date(schedule?.nextFireAt ?? '').getTime()).toBeGreaterThan(Date.now());
  });

  test('pause and resume: 200 with the schedule, 404 for an unknown name, audited in the event trail', async () => {
    expect(await api('POST', 'schedules/nightly_hello/pause')).toMatchObject({ status: 200, body: { name: 'nightly_hello', paused: true, nextFireAt: null } });
    expect(await api('POST', 'schedules/nightly_hello/resume')).toMatchObject({ status: 200, body: { name: 'nightly_hello', paused: false } });
    expect(await api('POST', 'schedules/nope/pause')).toMatchObject({ status: 404, body: { error: { type: 'ScheduleNotFoundError' } } });
    expect((await api('POST', 'schedules/nightly_hello/stop')).status).toBe(404);
    const trail = await dev.runtime.machine.schedules.events('nightly_hello');
    expect(trail.map((e) => [e.from, e.to])).toEqual([
      ['ACTIVE', 'PAUSED'],
      ['PAUSED', 'ACTIVE'],
    ]);
  });

  test('CLI: schedules prints the table; schedule pause|resume changes it; a wrong action is a usage error', async () => {
    const paused = await cli(['schedule', 'pause', 'nightly_hello']);
    expect(paused).toMatchObject({ code: 0, stdout: 'schedule nightly_hello is now paused\n' });
    const list = await cli(['schedules']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/NAME\s+CRON\s+TIMEZONE\s+JOB TYPE\s+STATE/);
    expect(list.stdout).toMatch(/nightly_hello\s+0 2 \* \* \*\s+Europe\/Berlin\s+hello_world\s+paused/);
    const resumed = await cli(['schedule', 'resume', 'nightly_hello']);
    expect(resumed.stdout).toMatch(/^schedule nightly_hello is now active \(next fire \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\)\n$/);
    expect((await cli(['schedule', 'stop', 'nightly_hello'])).code).toBe(2);
    expect(await cli(['schedule', 'pause', 'nope'])).toMatchObject({ code: 1 });
  });
});
