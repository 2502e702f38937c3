import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { appRegistry } from './support/registry';
import { defineJob, defineTask } from '../models';
import { ProgressDisplay } from '../bin/cli/progress';
import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';

const KEY = 'cli-test-key';

// Tasks of the gated job wait until the test opens the gate (or the job is cancelled), so the test
// decides when a watched job moves on.
let openGate: () => void = () => undefined;
let gate = new Promise<void>((resolve) => (openGate = resolve));
const gatedTask = defineTask({
  type: 'test.cli.gated',
  parameters: z.object({ index: z.number().int() }),
  handler: async ({ index }, ctx) => {
    await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
    if (ctx.signal.aborted) throw new Error(`task ${index} aborted`);
    return { index };
  },
});
const gatedJob = defineJob({ type: 'test.cli_gated', parameters: z.object({ run: z.string(), n: z.number().int().min(1) }) })
  .stage({ name: 'held', task: gatedTask, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index })) })
  .finalize(({ previous }) => ({ tasks: previous.count }));

const dev = useDevServer(appRegistry(gatedJob), { functionKey: KEY, beforeClose: () => openGate() });
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-cli-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs the CLI in-process with captured output; env points it at the test's dev server. */
function start(args: string[], options: { env?: Record<string, string | undefined>; isTTY?: boolean } = {}) {
  return startCli(args, {
    isTTY: options.isTTY ?? false,
    env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY, ...options.env },
    pollIntervalMs: 30,
  });
}
const cli = (args: string[], options?: Parameters<typeof start>[1]) => start(args, options).done;

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const submittedId = (stdout: string) => /job ([0-9a-f]{64})/.exec(stdout)?.[1] ?? '';
let helloId = '';

test('submit --watch runs hello_world to COMPLETED, exits 0 and prints plain progress lines when not a TTY', async () => {
  const run = await cli(['submit', 'hello_world', '--params', '{"n": 20}', '--watch']);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  helloId = submittedId(run.stdout);
  // The answer is read after the job message went out, so a worker may already have started it.
  expect(run.stdout).toMatch(/^submitted hello_world job [0-9a-f]{64} \((QUEUED|PROCESSING)\)\n/);
  expect(run.stdout).toContain(`  stage 1 greet      [########################] 20/20 completed, 0 failed — COMPLETED`);
  expect(run.stdout).toContain(`  stage 2 reply      [########################] 20/20 completed, 0 failed — COMPLETED`);
  expect(run.stdout).toMatch(/job COMPLETED in [\d.]+ m?s\n/);
  expect(run.stdout).toContain('"summary": "20 of 20 greetings answered"');
  expect(run.stdout).not.toContain('\x1b[');
});

test('status --json prints the job as parseable JSON; without --json a readable summary', async () => {
  const json = await cli(['status', helloId, '--json']);
  expect(json.code).toBe(0);
  expect(JSON.parse(json.stdout)).toMatchObject({
    jobId: helloId,
    status: 'COMPLETED',
    result: { replies: 20 },
    stages: [
      { stage: 1, name: 'greet', status: 'COMPLETED', total: 20, completed: 20, failed: 0 },
      { stage: 2, name: 'reply', status: 'COMPLETED', total: 20, completed: 20, failed: 0 },
    ],
  });
  const text = await cli(['status', helloId]);
  expect(text.stdout).toContain('status    COMPLETED\n');
  expect(text.stdout).toContain('stage     2 of 2\n');
});

test('jobs --status filters the list; tasks and events print one row each', async () => {
  const completed = await cli(['jobs', '--status', 'COMPLETED']);
  expect(completed.code).toBe(0);
  expect(completed.stdout.split('\n')[0]).toMatch(/^JOB ID\s+TYPE\s+STATUS\s+STAGE\s+CREATED\s+DURATION$/);
  expect(completed.stdout).toMatch(new RegExp(`^${helloId}\\s+hello_world\\s+COMPLETED\\s+2/2`, 'm'));
  expect(await cli(['jobs', '--status', 'FAILED'])).toMatchObject({ code: 0, stdout: 'no jobs\n' });

  const tasks = await cli(['tasks', helloId, '--stage', '2']);
  const taskLines = tasks.stdout.trimEnd().split('\n');
  expect(taskLines).toHaveLength(21);
  expect(taskLines.slice(1).every((line) => /^2\s+\d+\s+COMPLETED\s+1\s/.test(line))).toBe(true);

  // A lease lost to a host that died shows in a column of its own, apart from attempts.
  await dev.db.pool.query(`UPDATE coremachine.tasks SET lease_losses = 2 WHERE task_id = $1`, [`${helloId}-s2-t3`]);
  const lost = (await cli(['tasks', helloId, '--stage', '2'])).stdout.split('\n');
  expect(lost[0]).toMatch(/^STAGE\s+INDEX\s+STATUS\s+ATTEMPT\s+LEASES LOST\s+STARTED/);
  expect(lost.find((line) => /^2\s+3\s/.test(line))).toMatch(/^2\s+3\s+COMPLETED\s+1\s+2\s/);
  expect(lost.find((line) => /^2\s+4\s/.test(line))).toMatch(/^2\s+4\s+COMPLETED\s+1\s+0\s/);

  const events = await cli(['events', helloId]);
  const api = (await (await fetch(`${dev.server.url}/api/jobs/${helloId}/events`, { headers: { 'x-functions-key': KEY } })).json()) as { events: unknown[] };
  const eventLines = events.stdout.trimEnd().split('\n');
  expect(eventLines).toHaveLength(api.events.length + 1);
  expect(eventLines.at(-1)).toMatch(/\bjob\s+2\s+PROCESSING → COMPLETED$/);
  // Tasks that succeed at their first attempt write no events (migration 010): job and stage only.
  expect(eventLines.slice(1).every((line) => /^\d+\s+\S+ \S+\s+(job|stage)\s/.test(line))).toBe(true);
});

test('cancel on a COMPLETED job exits 1 with the 409 error; bad parameters exit 1 with the ValidationError', async () => {
  const cancel = await cli(['cancel', helloId]);
  expect(cancel.code).toBe(1);
  expect(cancel.stdout).toBe('');
  expect(cancel.stderr).toMatch(/^error: InvalidTransitionError \(HTTP 409\): .*COMPLETED/);

  const bad = await cli(['submit', 'hello_world', '--params', '{"n": 0}']);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/^error: ValidationError \(HTTP 400\): invalid parameters for job type "hello_world"/);
  expect(bad.stderr).toMatch(/^ {2}n: .+$/m);
  const unknown = await cli(['submit', 'no_such_type', '--params', '{}']);
  expect(unknown).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: UnknownJobTypeError \(HTTP 404\)/) as unknown });
});

test('usage errors exit 2 and print the usage; nothing is sent', async () => {
  for (const args of [
    [],
    ['frobnicate'],
    ['submit', 'hello_world'],
    ['submit', 'hello_world', '--params', '{"n": 1}', '--file', 'x.json'],
    ['submit', 'hello_world', '--params', '{n: 1}'],
    ['submit', 'hello_world', '--file', path.join(tmp, 'missing.json')],
    ['status'],
    ['status', 'a', 'b'],
    ['jobs', '--bogus'],
    ['cancel'],
    ['jobs', '--url', 'not a url'],
  ]) {
    const run = await cli(args);
    expect({ args, code: run.code }).toEqual({ args, code: 2 });
    expect(run.stderr).toMatch(/usage: coremachine/);
    expect(run.stdout).toBe('');
  }
  expect((await cli(['help'])).code).toBe(0);
});

test('--key, --url and connection failures: 401 and unreachable servers exit 1 with the error type', async () => {
  const noKey = await cli(['jobs'], { env: { COREMACHINE_FUNCTION_KEY: undefined } });
  expect(noKey).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: UnauthorizedError \(HTTP 401\)/) as unknown });
  const flags = await cli(['jobs', '--url', dev.server.url, '--key', KEY], {
    env: { COREMACHINE_URL: 'http://127.0.0.1:9', COREMACHINE_FUNCTION_KEY: 'wrong' },
  });
  expect(flags.code).toBe(0);
  expect(flags.stdout).toContain(helloId);
  const down = await cli(['jobs', '--url', 'http://127.0.0.1:9']);
  expect(down).toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/^error: ConnectionError: could not reach http:\/\/127\.0\.0\.1:9\/api\/jobs/) as unknown,
  });
});

test('--file submits parameters from a file; --watch on a TTY redraws in place; pause, resume, cancel, retry', async () => {
  const file = path.join(tmp, 'params.json');
  writeFileSync(file, JSON.stringify({ run: 'tty', n: 3 }));
  const watch = start(['submit', 'test.cli_gated', '--file', file, '--watch'], { isTTY: true });
  await until(() => watch.stdout().includes('0/3 completed, 0 failed — PROCESSING'), 'the watched job to start');
  openGate();
  const watched = await watch.done;
  expect(watched.code).toBe(0);
  // Later frames start by moving the cursor up over the previous frame (job line + one stage) and clearing.
  expect(watched.stdout).toContain('\x1b[2F\x1b[0J');
  expect(watched.stdout).toContain('3/3 completed, 0 failed — COMPLETED');

  // A fresh gate holds the next job; its watch ends with exit 1 when the job is cancelled.
  gate = new Promise<void>((resolve) => (openGate = resolve));
  const held = start(['submit', 'test.cli_gated', '--params', '{"run": "control", "n": 2}', '--watch']);
  await until(() => held.stdout().includes('— PROCESSING'), 'the held job to start');
  const jobId = submittedId(held.stdout());
  expect(await cli(['pause', jobId])).toMatchObject({ code: 0, stdout: `pause: test.cli_gated job ${jobId} is now PAUSED\n` });
  // The resumed job may already have been picked up again by the time the answer is read.
  expect(await cli(['resume', jobId])).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/^resume: test\.cli_gated job [0-9a-f]{64} is now (QUEUED|PROCESSING)\n$/) as unknown,
  });
  expect(await cli(['cancel', jobId])).toMatchObject({ code: 0, stdout: `cancel: test.cli_gated job ${jobId} is now CANCELLED\n` });
  const cancelled = await held.done;
  expect(cancelled.code).toBe(1);
  expect(cancelled.stdout).toContain('job CANCELLED in');
  expect(await cli(['retry', jobId])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: InvalidTransitionError \(HTTP 409\)/) as unknown });
});

test('signal: a waiting approved_publish job is approved from the CLI; refusals exit 1 with the API error, usage errors 2', async () => {
  const submitted = await cli(['submit', 'approved_publish', '--params', '{"title": "cli", "pages": 2}']);
  expect(submitted.code).toBe(0);
  const jobId = submittedId(submitted.stdout);
  let status = await cli(['status', jobId]);
  for (const deadline = Date.now() + 15_000; !status.stdout.includes('waiting for signal') && Date.now() < deadline; status = await cli(['status', jobId])) {
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  expect(status.stdout).toContain(`waiting for signal "approval" at stage 2: coremachine signal ${jobId} approval --data '{...}'`);

  const bad = await cli(['signal', jobId, 'approval', '--data', '{"approved": "yes"}']);
  expect(bad).toMatchObject({
    code: 1,
    stdout: '',
    stderr: expect.stringMatching(/^error: ValidationError \(HTTP 400\): invalid payload for signal "approval"/) as unknown,
  });
  const wrong = await cli(['signal', jobId, 'sign-off', '--data', '{}']);
  expect(wrong).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: SignalRefusedError \(HTTP 409\)/) as unknown });
  expect(await cli(['signal', '0'.repeat(64), 'approval', '--data', '{}'])).toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/^error: JobNotFoundError \(HTTP 404\)/) as unknown,
  });
  for (const args of [
    ['signal', jobId, 'approval'],
    ['signal', jobId, '--data', '{}'],
    ['signal', jobId, 'approval', '--data', '{no json'],
  ]) {
    expect({ args, code: (await cli(args)).code }).toEqual({ args, code: 2 });
  }

  const file = path.join(tmp, 'approval.json');
  writeFileSync(file, JSON.stringify({ approvedBy: 'cli-user', approved: true }));
  const sent = await cli(['signal', jobId, 'approval', '--file', file]);
  expect(sent.code).toBe(0);
  expect(sent.stdout).toMatch(new RegExp(`^signal approval delivered: approved_publish job ${jobId} is (QUEUED|PROCESSING|COMPLETED) at stage 3 of 3\n$`));
  const again = await cli(['signal', jobId, 'approval', '--data', '{"approved": true, "approvedBy": "cli-user"}']);
  expect(again).toMatchObject({ code: 0, stdout: expect.stringMatching(/^signal approval was already delivered with this payload/) as unknown });

  let done = JSON.parse((await cli(['status', jobId, '--json'])).stdout) as { status: string; result: unknown };
  for (
    const deadline = Date.now() + 15_000;
    done.status !== 'COMPLETED' && Date.now() < deadline;
    done = JSON.parse((await cli(['status', jobId, '--json'])).stdout) as typeof done
  ) {
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  expect(done).toMatchObject({ status: 'COMPLETED', result: { published: 2, approvedBy: 'cli-user', outcome: 'published' } });
  expect((await cli(['events', jobId])).stdout).toMatch(/\bsignal\s+2\s+approval\s+WAITING → RECEIVED/);
});

test('the TTY progress display clears every row it drew, including wrapped ones, and skips unchanged frames', () => {
  const out: string[] = [];
  const display = new ProgressDisplay({ out: (text) => out.push(text), err: () => undefined, isTTY: true, columns: 10, env: {} });
  display.show('0123456789abcde\nshort'); // 15 characters wrap onto 2 rows of 10, plus 1
  display.show('0123456789abcde\nshort');
  display.show('done');
  display.show('next');
  expect(out).toEqual(['0123456789abcde\nshort\n', '\x1b[3F\x1b[0J', 'done\n', '\x1b[1F\x1b[0J', 'next\n']);
});
