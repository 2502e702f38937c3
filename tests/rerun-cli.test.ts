import { z } from 'zod';
import { defineJob, defineTask } from '../models';
import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

// `coremachine rerun` and `coremachine bulk` against `coremachine dev`: what they print, and the
// exit code on every path (0 done, 1 the API refused, 2 a wrong invocation, nothing sent).

const KEY = 'rerun-cli-key';
const square = defineTask({ type: 'test.rerun_cli.square', parameters: z.object({ i: z.number().int() }), handler: ({ i }) => ({ i, square: i * i }) });
const squares = defineJob({ type: 'test.rerun_cli', parameters: z.object({ n: z.number().int().min(1) }) })
  .stage({ name: 'square', task: square, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
  .finalize(async ({ previous }) => ({ sum: (await previous.all()).reduce((a, r) => a + r.square, 0) }));

const dev = useDevServer(appRegistry(squares), { functionKey: KEY });
const cli = (args: string[]) => startCli(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY } }).done;

async function completedJob(n: number): Promise<string> {
  const { job } = await dev.runtime.machine.submitJob('test.rerun_cli', { n });
  for (let i = 0; i < 500 && (await dev.runtime.machine.getJob(job.jobId)).status !== 'COMPLETED'; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  return job.jobId;
}

test('rerun: a dry run lists the chosen tasks, a re-run says what runs again; the trail names it', async () => {
  const jobId = await completedJob(4);
  const dry = await cli(['rerun', jobId, '--stage', '1', '--task', 's1-t0', '--task', `${jobId}-s1-t2`, '--dry-run']);
  expect(dry).toMatchObject({ code: 0, stderr: '' });
  expect(dry.stdout).toBe(`dry run: would re-run 2 task(s) of stage 1 of job ${jobId}; recomputes finalize\n  s1-t0\n  s1-t2\n`);
  const rerun = await cli(['rerun', jobId, '--stage', '1', '--result-field', 'square=9']);
  expect(rerun.code).toBe(0);
  expect(rerun.stdout).toMatch(
    new RegExp(`^re-run 1: 1 task\\(s\\) of stage 1 run again; test\\.rerun_cli job ${jobId} is (QUEUED|PROCESSING|COMPLETED); recomputes finalize\\n$`),
  );
  for (let i = 0; i < 500 && (await dev.runtime.machine.getJob(jobId)).status !== 'COMPLETED'; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  const events = await cli(['events', jobId]);
  expect(events.stdout).toMatch(/rerun\s+1\s+1 task\(s\) re-run\s+COMPLETED → QUEUED/);
});

test('rerun and bulk: wrong invocations exit 2 with the usage and send nothing; refusals exit 1 with the API error', async () => {
  const jobId = await completedJob(2);
  for (const args of [
    ['rerun'],
    ['rerun', jobId],
    ['rerun', jobId, '--stage', '1'],
    ['rerun', jobId, '--stage', '1', '--result-field', 'novalue'],
    ['rerun', jobId, '--stage', '1', '--status', 'FAILED', '--bogus'],
    ['bulk'],
    ['bulk', 'purge', '--status', 'FAILED'],
    ['bulk', 'cancel'],
    ['bulk', 'cancel', '--label', 'nolabel'],
    ['bulk', 'cancel', '--status', 'FAILED', 'extra'],
  ]) {
    const run = await cli(args);
    expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 2, stdout: '' });
    expect(run.stderr).toMatch(/usage: coremachine (rerun|bulk)/);
  }
  const refusals: Array<[string[], RegExp]> = [
    [['rerun', jobId, '--stage', 'x', '--status', 'FAILED'], /^error: ValidationError \(HTTP 400\): invalid path: .*\n {2}stage: /],
    [['rerun', jobId, '--stage', '1', '--status', 'RUNNING'], /^error: ValidationError \(HTTP 400\).*\n {2}status: /],
    [['rerun', jobId, '--stage', '1', '--task', 'bogus'], /^error: ValidationError \(HTTP 400\).*\n {2}taskIds\.0: a task id is/],
    [['rerun', jobId, '--stage', '5', '--status', 'COMPLETED'], /^error: RerunRefusedError \(HTTP 409\): job [0-9a-f]{64} cannot re-run tasks of stage 5/],
    [['rerun', '0'.repeat(64), '--stage', '1', '--status', 'FAILED'], /^error: JobNotFoundError \(HTTP 404\)/],
    [['bulk', 'cancel', '--since', 'yesterday'], /^error: ValidationError \(HTTP 400\).*\n {2}filter\.createdAfter: a time is ISO 8601/],
    [['bulk', 'delete', '--status', 'FAILED', '--limit', '0'], /^error: ValidationError \(HTTP 400\).*\n {2}limit: expected at least 1/],
  ];
  for (const [args, stderr] of refusals) {
    const run = await cli(args);
    expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 1, stdout: '' });
    expect(run.stderr).toMatch(stderr);
  }
});

test('bulk: a dry run says what would change (exit 0); jobs that cannot take the action are printed with the reason (exit 1)', async () => {
  const jobId = await completedJob(1);
  const dry = await cli(['bulk', 'cancel', '--job-type', 'test.rerun_cli', '--label', 'nobody=here', '--dry-run']);
  expect(dry).toMatchObject({ code: 0, stdout: 'dry run: 0 job(s) match; 0 would be cancelled, 0 cannot be\n' });
  const refused = await cli(['bulk', 'cancel', '--job-type', 'test.rerun_cli', '--since', '2000-01-01T00:00:00Z']);
  expect(refused.code).toBe(1);
  expect(refused.stdout).toMatch(/^cancel: \d+ job\(s\) matched; 0 cancelled, \d+ refused\n/);
  expect(refused.stdout).toContain(`  refused  ${jobId} (COMPLETED): invalid job transition COMPLETED → CANCELLED`);
  const deletable = await cli(['bulk', 'delete', '--job-type', 'test.rerun_cli', '--status', 'COMPLETED', '--dry-run', '--json']);
  expect(deletable.code).toBe(0);
  expect(JSON.parse(deletable.stdout)).toMatchObject({
    action: 'delete',
    dryRun: true,
    counts: { refused: 0 },
    changed: expect.arrayContaining([jobId]) as unknown,
  });
});
