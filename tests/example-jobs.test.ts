import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import type { TaskContext } from '../models';
import { setAppContext } from '../functions/app-context';
import { submitJobHandler } from '../functions/http-jobs';
import { countWords, listFiles, wordFrequenciesRoot } from '../jobs/word-frequencies';
import { captureLogger, useHarnessPerTest, waitForJob } from './support/harness';

/**
 * The example jobs ship with the app and may be left deployed: hostile parameters must not read
 * the host. word_frequencies reads only below its root; hello_world reads nothing but `n`.
 */
const { db, h } = useHarnessPerTest();

const ROOT_ENV = 'COREMACHINE_WORD_FREQUENCIES_ROOT';
let sandbox: string;
let root: string;
let outside: string;

beforeAll(() => {
  // A root holding one good text, a symlinked folder and file that lead outside it, and a FIFO.
  sandbox = fs.mkdtempSync(path.join(os.tmpdir(), 'cm-wordfreq-'));
  root = path.join(sandbox, 'root');
  outside = path.join(sandbox, 'outside');
  fs.mkdirSync(path.join(root, 'texts'), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(root, 'texts', 'good.txt'), 'alpha alpha beta');
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'password password password hunter');
  fs.symlinkSync(outside, path.join(root, 'escape'));
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'texts', 'leak.txt'));
  execFileSync('mkfifo', [path.join(root, 'texts', 'pipe.txt')]);
  fs.symlinkSync(root, path.join(sandbox, 'root-link'));
});
afterAll(() => {
  fs.rmSync(sandbox, { recursive: true, force: true });
});
afterEach(() => {
  delete process.env[ROOT_ENV];
  setAppContext(undefined);
});

const context: TaskContext = {
  jobId: 'j',
  taskId: 't',
  stage: 1,
  taskIndex: 0,
  attempt: 1,
  signal: new AbortController().signal,
  heartbeat: () => Promise.resolve(),
  log: () => undefined,
};

async function submitOverHttp(
  jobType: string,
  body: string,
): Promise<{ status: number; body: { error?: { type: string; message: string; issues?: Array<{ path: unknown[] }> } } }> {
  setAppContext({ machine: h().machine, pool: db().pool, transport: h().transport, logger: captureLogger(h().logs) });
  const request = new HttpRequest({
    method: 'POST',
    url: `http://localhost:7071/api/jobs/${jobType}`,
    params: { jobType },
    body: { string: body },
    headers: { 'content-type': 'application/json' },
  });
  const response = new HttpResponse(await submitJobHandler(request, new InvocationContext({ functionName: 'jobs-submit' })));
  return { status: response.status, body: (await response.json()) as never };
}

async function storedJobs(): Promise<number> {
  const result = await db().pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs');
  return result.rows[0]?.n ?? -1;
}

test('word_frequencies on the data it ships: no parameters needed, the three sample texts counted', async () => {
  expect(fs.realpathSync(wordFrequenciesRoot({}))).toBe(fs.realpathSync(path.join(__dirname, '..', 'jobs', 'data', 'word-frequencies')));
  const { job } = await h().machine.submitJob('word_frequencies', {});
  expect(job.parameters).toEqual({ directory: '.', extension: '.txt', topK: 10, minLength: 3 });
  const done = await waitForJob(h().machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toMatchObject({ files: 3, top: expect.arrayContaining([{ word: 'the', count: expect.any(Number) as number }]) as unknown });
});

test.each([
  ['/proc/self environ', { directory: '/proc/self', extension: 'environ' }, 'directory'],
  ['/etc shadow', { directory: '/etc', extension: 'shadow' }, 'directory'],
  ['a parent folder', { directory: '..' }, 'directory'],
  ['.. inside a path', { directory: 'texts/../../..' }, 'directory'],
  ['.. with backslashes', { directory: 'texts\\..\\..' }, 'directory'],
  ['a Windows absolute path', { directory: 'C:\\Windows' }, 'directory'],
  ['an extension that is a path', { extension: '/../../etc/passwd' }, 'extension'],
])('submission refused with 400 and nothing stored: %s', async (_label, parameters, field) => {
  const before = await storedJobs();
  const reply = await submitOverHttp('word_frequencies', JSON.stringify(parameters));
  expect(reply.status).toBe(400);
  expect(reply.body.error?.type).toBe('ValidationError');
  expect(reply.body.error?.issues?.map((issue) => issue.path[0])).toEqual([field]);
  expect(await storedJobs()).toBe(before);
});

test('a NUL in a name is refused with 400 and nothing stored', async () => {
  const before = await storedJobs();
  const reply = await submitOverHttp('word_frequencies', JSON.stringify({ directory: 'texts\u0000/../../etc' }));
  expect(reply.status).toBe(400);
  expect(reply.body.error?.type).toBe('ValidationError');
  expect(await storedJobs()).toBe(before);
});

test('a symlinked folder that leads outside the configured root: the job FAILS and the message does not say where it led', async () => {
  process.env[ROOT_ENV] = root;
  const { job } = await h().machine.submitJob('word_frequencies', { directory: 'escape' });
  const done = await waitForJob(h().machine, job.jobId);
  expect(done.status).toBe('FAILED');
  expect(done.error).toMatchObject({ stage: 1, message: expect.stringContaining('"escape" resolves outside the root folder') as string });
  expect(JSON.stringify(done.error)).not.toContain(outside);
  expect(done.result).toBeNull();
});

test("a failed job's error, causes included, names no absolute path of the host", async () => {
  for (const [setting, directory] of [
    [root, 'no-such-folder'],
    [path.join(sandbox, 'missing-root'), '.'],
  ] as const) {
    process.env[ROOT_ENV] = setting;
    const { job } = await h().machine.submitJob('word_frequencies', { directory }, { idempotencyKey: 'host-paths' });
    const done = await waitForJob(h().machine, job.jobId);
    expect(done.status).toBe('FAILED');
    const recorded = JSON.stringify({ error: done.error, tasks: (await h().machine.listTasks(job.jobId)).map((task) => task.error) });
    expect(recorded).toContain('ENOENT');
    expect(recorded).not.toContain(sandbox);
    expect(recorded).not.toContain(process.cwd());
  }
});

test('listing skips symlinks and FIFOs: only the regular file below the root is counted', async () => {
  process.env[ROOT_ENV] = root;
  const { job } = await h().machine.submitJob('word_frequencies', { directory: 'texts', minLength: 1 });
  const done = await waitForJob(h().machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({
    files: 1,
    words: 3,
    distinctWords: 2,
    top: [
      { word: 'alpha', count: 2 },
      { word: 'beta', count: 1 },
    ],
  });
});

test('the root may itself be reached through a symlink', async () => {
  process.env[ROOT_ENV] = path.join(sandbox, 'root-link');
  await expect(listFiles.handler({ directory: 'texts', extension: '.txt' }, context)).resolves.toEqual({ files: ['texts/good.txt'] });
});

test.each([
  ['a symlinked file leading outside', 'texts/leak.txt', /"texts\/leak.txt" resolves outside the root folder/],
  ['a FIFO (which would block a plain read forever)', 'texts/pipe.txt', /"texts\/pipe.txt" is not a regular file/],
  ['a folder', 'texts', /"texts" is not a regular file/],
  ['a missing file', 'texts/none.txt', /"texts\/none.txt" does not exist below the root/],
  ['an absolute path given to the task directly', '/etc/passwd', /must be a path relative to the root/],
])('the count task refuses %s, non-retryably', async (_label, file, message) => {
  process.env[ROOT_ENV] = root;
  const refused = countWords.handler({ file, minLength: 1 }, context);
  await expect(refused).rejects.toThrow(message);
  await expect(refused).rejects.toMatchObject({ name: 'TaskFailure', nonRetryable: true });
});

test('the list task refuses a file named as a folder and a root that does not exist', async () => {
  process.env[ROOT_ENV] = root;
  await expect(listFiles.handler({ directory: 'texts/good.txt', extension: '.txt' }, context)).rejects.toThrow(/"texts\/good.txt" is not a folder/);
  process.env[ROOT_ENV] = path.join(sandbox, 'missing');
  await expect(listFiles.handler({ directory: '.', extension: '.txt' }, context)).rejects.toThrow(/its root folder cannot be read/);
});

test('hello_world takes nothing but a bounded n: anything else is a 400 with nothing stored', async () => {
  const before = await storedJobs();
  for (const body of ['{"n":0}', '{"n":10001}', '{"n":1.5}', '{"n":"5"}', '{}']) {
    const reply = await submitOverHttp('hello_world', body);
    expect([body, reply.status, reply.body.error?.type]).toEqual([body, 400, 'ValidationError']);
  }
  expect(await storedJobs()).toBe(before);
});

test("the README's job example is jobs/hello-world.ts, word for word", () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  expect(readme).toContain('\n## A first job\n');
  const section = readme.slice(readme.indexOf('## A first job'));
  const example = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(example).toBe(fs.readFileSync(path.join(__dirname, '..', 'jobs', 'hello-world.ts'), 'utf8'));
});
