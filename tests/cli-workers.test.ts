import { z } from 'zod';
import { defineJob, defineRemoteTask } from '../models';
import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

// `coremachine workers`: the dev server's own host and a remote worker, whose id is the worker's
// text and reaches the terminal with its control characters made visible, never as a line of its own.

const KEY = 'workers-cli-key';
const render = defineRemoteTask({ type: 'test.cli.render', parameters: z.object({ index: z.number().int() }), result: z.object({ ok: z.boolean() }) });
const remoteJob = defineJob({ type: 'test.cli_remote', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'render', task: render, fanOut: () => [{ index: 0 }] })
  .finalize(() => ({ done: true }));
const dev = useDevServer(appRegistry(remoteJob), { functionKey: KEY });

const cli = (args: string[]) => startCli(args, { isTTY: false, columns: 200, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY } }).done;
const api = async <T>(route: string, body: unknown): Promise<T> =>
  (await (
    await fetch(`${dev.server.url}/api/${route}`, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'x-functions-key': KEY, 'content-type': 'application/json' },
    })
  ).json()) as T;

/** Clear screen, then a newline faking a row and a carriage return over it. */
const HOSTILE_ID = 'gpu\x1b[2J\nstatus    COMPLETED\r\x9b1m';
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

test('workers lists the host and a remote worker with its task types and held task; --json parses back to the ids the API holds', async () => {
  const { jobId } = await api<{ jobId: string }>('jobs/test.cli_remote', { tag: 'cli' });
  let claimed: Array<{ taskId: string; claimId: string }> = [];
  for (let i = 0; i < 200 && claimed.length === 0; i++) {
    claimed = (await api<{ tasks: typeof claimed }>('workers/claim', { workerId: HOSTILE_ID, taskTypes: ['test.cli.render'] })).tasks;
    if (claimed.length === 0) await new Promise((resolve) => setTimeout(resolve, 25));
  }
  expect(claimed).toHaveLength(1);

  const listed = await cli(['workers']);
  expect(listed.code).toBe(0);
  const lines = listed.stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^WORKER +KIND +HOST +HELD +LAST CLAIM +LAST HEARTBEAT +TASK TYPES$/);
  expect(lines).toHaveLength(3);
  const host = lines.find((line) => line.startsWith(dev.runtime.machine.presence.workerId));
  expect(host).toMatch(/ in-process .* 0 .* s ago .*hello_world\.greet/);
  const remote = lines.find((line) => line.startsWith('gpu'));
  expect(remote).toContain('gpu\\u001b[2J status    COMPLETED\\u000d\\u009b1m');
  expect(remote).toMatch(/ remote +1 .* test\.cli\.render$/);
  expect(listed.stdout).not.toMatch(RAW_CONTROL);
  expect(listed.stdout).not.toMatch(/^status\s+COMPLETED/m);

  const json = await cli(['workers', '--json']);
  expect(json.code).toBe(0);
  expect(json.stdout).not.toMatch(RAW_CONTROL);
  const workers = JSON.parse(json.stdout) as Array<{ workerId: string; kind: string; tasksHeld: number; taskTypes: string[]; stale: boolean }>;
  expect(workers).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ workerId: HOSTILE_ID, kind: 'remote', tasksHeld: 1, taskTypes: ['test.cli.render'], stale: false }),
      expect.objectContaining({ workerId: dev.runtime.machine.presence.workerId, kind: 'in-process', tasksHeld: 0 }),
    ]),
  );

  const [task] = claimed;
  await api(`workers/tasks/${task!.taskId}/complete`, { claimId: task!.claimId, result: { ok: true } });
  const done = await fetch(`${dev.server.url}/api/jobs/${jobId}?waitSeconds=10`, { headers: { 'x-functions-key': KEY } });
  expect(((await done.json()) as { status: string }).status).toBe('COMPLETED');
  expect((await cli(['workers', '--help'])).stdout).toContain('usage: coremachine workers [--json]');
});
