import { z } from 'zod';
import { defineJob, defineTask } from '../models';
import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

// The deadline through the CLI: `submit --timeout-seconds` sends the header, `status` shows it.
const KEY = 'deadline-cli-key';
const quick = defineTask({ type: 'dl.cli.quick', parameters: z.object({ index: z.number().int() }), handler: ({ index }) => Promise.resolve({ index }) });
const timed = defineJob({ type: 'dl.cli', parameters: z.object({ n: z.number().int() }), timeoutSeconds: 600 })
  .stage({ name: 'one', task: quick, timeoutSeconds: 300, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index })) })
  .finalize(({ previous }) => ({ count: previous.count }));

const dev = useDevServer(appRegistry(timed), { functionKey: KEY });

const cli = (args: string[]) =>
  startCli(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY }, pollIntervalMs: 30 }).done;

test('submit --timeout-seconds shortens the deadline and status shows it; out of bounds is refused with the reason', async () => {
  const run = await cli(['submit', 'dl.cli', '--params', '{"n": 2}', '--timeout-seconds', '120', '--wait']);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  const jobId = /job ([0-9a-f]{64})/.exec(run.stdout)?.[1] ?? '';
  const job = await dev.runtime.machine.getJob(jobId);
  expect(job.status).toBe('COMPLETED');
  expect(job.timeoutSeconds).toBe(120);
  expect((job.deadline?.getTime() ?? 0) - job.createdAt.getTime()).toBe(120_000);

  const status = await cli(['status', jobId]);
  expect(status.code).toBe(0);
  const shown = job.deadline?.toISOString() ?? '';
  expect(status.stdout).toContain(`deadline  ${shown.slice(0, 10)} ${shown.slice(11, 19)}Z (timeout 120 s)`);

  const refused = await cli(['submit', 'dl.cli', '--params', '{"n": 3}', '--timeout-seconds', '601']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/ValidationError \(HTTP 400\).*may only shorten it/);
  expect(refused.stderr).toMatch(/timeoutSeconds:/);
  expect((await dev.runtime.machine.listJobs({ jobType: 'dl.cli' })).jobs).toHaveLength(1);
});
