import { z } from 'zod';
import { defineJob, defineTask } from '../models';
import { createLogger } from '../core/logger';
import { guardIo } from '../bin/cli/io';
import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

// Text that came from outside (a handler's error, submitted parameters, names the server echoes)
// reaches the operator's terminal with its control characters made visible, in every command and
// in `coremachine dev`'s JSON log lines.

const KEY = 'untrusted-text-key';
/** Clipboard write (OSC 52), clear screen, a carriage return over a fake line, C1 CSI, DEL, and a newline faking a status line. */
const EVIL = 'boom \x1b]52;c;ZXZpbA==\x07 \x1b[2J\rjob COMPLETED \x9b31m \x7f\nstatus    COMPLETED';
const EVIL_TYPE = 'Evil\x1b[31mError\x9b';
/** Every control character a terminal may act on: C0 but "\n" (tab and \r included), DEL, C1. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

const evilTask = defineTask({
  type: 'test.untrusted.fail',
  parameters: z.object({ note: z.string() }),
  handler: ({ note }) => {
    const error = new Error(`${EVIL} (note ${note})`);
    error.name = EVIL_TYPE;
    throw error;
  },
});
const evilJob = defineJob({ type: 'test.untrusted_text', parameters: z.object({ note: z.string() }) })
  .stage({ name: 'fails', task: evilTask, fanOut: ({ parameters }) => [{ note: parameters.note }] })
  .finalize(() => ({}));

const logLines: string[] = [];
const dev = useDevServer(appRegistry(evilJob), { functionKey: KEY, logger: createLogger('debug', {}, (line) => logLines.push(line)) });

const cli = (args: string[], isTTY = false) =>
  startCli(args, { isTTY, columns: 200, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY }, pollIntervalMs: 20 }).done;

/** The output holds no raw control character, and no line of its own that the error text faked. */
function expectClean(what: string, text: string): void {
  const raw = RAW_CONTROL.exec(text);
  expect({ what, raw: raw ? `U+${raw[0].charCodeAt(0).toString(16).padStart(4, '0')} at ${raw.index}` : null }).toEqual({ what, raw: null });
  expect({ what, fakeLine: /^(status\s+COMPLETED|job COMPLETED)/m.test(text) }).toEqual({ what, fakeLine: false });
}

const NOTE = 'from \x1b[8m outside \x9d0;title\x9c \x7f';
let jobId = '';

test("submit --watch, status, tasks, events and jobs print a failing handler's hostile error and parameters with control characters visible", async () => {
  const watched = await cli(['submit', evilJob.type, '--params', JSON.stringify({ note: NOTE }), '--watch']);
  expect(watched.code).toBe(1);
  jobId = /job ([0-9a-f]{64})/.exec(watched.stdout)?.[1] ?? '';
  expect(watched.stdout).toContain('job FAILED in');
  // The error line is one line, its control characters written as \u escapes (the handler's own
  // error, with its hostile name, is the cause of the engine's TaskHandlerError).
  expect(watched.stdout).toContain('"type": "Evil\\u001b[31mError\\u009b"');
  expect(watched.stdout).toContain(
    'error: TaskHandlerError: boom \\u001b]52;c;ZXZpbA==\\u0007 \\u001b[2J\\u000djob COMPLETED \\u009b31m \\u007f status    COMPLETED',
  );
  expectClean('submit --watch', watched.stdout + watched.stderr);

  const status = await cli(['status', jobId]);
  expect(status.code).toBe(0);
  expect(status.stdout).toMatch(/^status {4}FAILED$/m);
  expect(status.stdout).toContain('\\u009d0;title\\u009c \\u007f'); // the parameters' C1 and DEL
  expect(status.stdout).toContain('\\u001b]52;c;ZXZpbA==\\u0007');
  expectClean('status', status.stdout + status.stderr);

  for (const args of [['tasks', jobId], ['events', jobId], ['jobs']]) {
    const run = await cli(args);
    expect({ args, code: run.code }).toEqual({ args, code: 0 });
    expectClean(args.join(' '), run.stdout + run.stderr);
    if (args[0] !== 'jobs')
      expect(run.stdout).toContain('TaskHandlerError: boom \\u001b]52;c;ZXZpbA==\\u0007 \\u001b[2J\\u000djob COMPLETED \\u009b31m \\u007f status    COMPLETED');
  }
});

test('status --json stays JSON: the escapes parse back to the very strings the API holds', async () => {
  const run = await cli(['status', jobId, '--json']);
  expect(run.code).toBe(0);
  expectClean('status --json', run.stdout);
  const api = (await (await fetch(`${dev.server.url}/api/jobs/${jobId}`, { headers: { 'x-functions-key': KEY } })).json()) as {
    error: { message: string };
    parameters: unknown;
  };
  expect(api.error.message).toContain(EVIL);
  expect(JSON.parse(run.stdout)).toMatchObject({
    jobId,
    status: 'FAILED',
    parameters: { note: NOTE },
    error: { type: 'TaskHandlerError', message: api.error.message, cause: { type: EVIL_TYPE } },
  });
});

test('names the server echoes in its refusals (an unknown job type, a signal name) are made visible on stderr', async () => {
  const unknown = await cli(['submit', 'nope\x1b]0;title\x07\x9b2J', '--params', '{}']);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toMatch(/^error: \w+ \(HTTP 4\d\d\)/);
  expect(unknown.stderr).toContain('nope\\u001b]0;title\\u0007\\u009b2J');
  expectClean('submit <hostile type>', unknown.stdout + unknown.stderr);

  const signal = await cli(['signal', jobId, 'go\x1b[2J\x9b', '--data', '{}']);
  expect(signal.code).toBe(1);
  expectClean('signal <hostile name>', signal.stdout + signal.stderr);
});

test('on a TTY the only raw escapes are the progress redraw; terminalControl takes CSI sequences and nothing else', async () => {
  const tty = await cli(['submit', evilJob.type, '--params', JSON.stringify({ note: 'tty' }), '--watch'], true);
  expect(tty.code).toBe(1);
  expect(tty.stdout).toContain('\\u001b]52;c;ZXZpbA==\\u0007');
  // eslint-disable-next-line no-control-regex -- the redraw is the one raw sequence allowed
  expectClean('submit --watch on a TTY', tty.stdout.replace(/\x1b\[\d+F\x1b\[0J/g, ''));

  const written: string[] = [];
  const io = guardIo({ out: (text) => written.push(text), err: (text) => written.push(text), isTTY: true, env: {} });
  io.terminalControl?.('\x1b[3F\x1b[0J');
  expect(() => io.terminalControl?.('\x1b]52;c;ZXZpbA==\x07')).toThrow(/CSI sequences only/);
  expect(() => io.terminalControl?.('\x1b[2Jhello')).toThrow(/CSI sequences only/);
  io.out('a\tb\rc\x1b\x7f\x85\n');
  expect(guardIo(io)).toBe(io);
  expect(written).toEqual(['\x1b[3F\x1b[0J', 'a\\u0009b\\u000dc\\u001b\\u007f\\u0085\n']);
});

test('log lines (what `coremachine dev` prints) escape DEL and C1 too, and still parse back to the original text', () => {
  const lines: string[] = [];
  const message = `m ${EVIL} \x85 \x9f \x80`;
  createLogger('debug', { jobType: 'x\x9b' }, (line) => lines.push(line))
    .child({ note: NOTE })
    .warn(message, { error: { message: EVIL } });
  expect(lines).toHaveLength(1);
  const line = lines[0] ?? '';
  expect(line).not.toMatch(RAW_CONTROL);
  expect(line).toContain('\\u009b31m \\u007f');
  expect(JSON.parse(line)).toMatchObject({ level: 'warn', message, jobType: 'x\x9b', note: NOTE, error: { message: EVIL } });

  // The dev server's own log of the failed handler: every line parses, none carries a raw control character.
  expect(logLines.length).toBeGreaterThan(0);
  for (const logged of logLines) {
    expect(logged).not.toMatch(RAW_CONTROL);
    expect(() => JSON.parse(logged) as unknown).not.toThrow();
  }
  expect(logLines.some((logged) => logged.includes('\\u009b31m') && JSON.stringify(JSON.parse(logged)).includes('\x9b31m'))).toBe(true);
});
