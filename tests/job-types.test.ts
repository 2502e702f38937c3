/**
 * Producers not written in TypeScript build against JSON Schema: GET /api/job-types lists every
 * registered job type with the schema of its parameters and of its signals' payloads, and the
 * schemas of the submissions queue's messages and receipts; the CLI prints them.
 */
import { z } from 'zod';
import { defineJob, defineTask } from '../models';
import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

// One type in two versions: the catalogue lists both, newest first.
const note = defineTask({ type: 'catalogue.note', parameters: z.object({ text: z.string() }), handler: ({ text }) => text });
const notesV1 = defineJob({ type: 'catalogue.notes', parameters: z.object({ text: z.string() }) })
  .stage({ name: 'write', task: note, fanOut: ({ parameters }) => [{ text: parameters.text }] })
  .finalize(() => 'v1');
const notesV2 = defineJob({ type: 'catalogue.notes', version: 2, parameters: z.object({ lines: z.array(z.string()) }) })
  .stage({ name: 'write', task: note, fanOut: ({ parameters }) => parameters.lines.map((text) => ({ text })) })
  .stage({ name: 'rewrite', task: note, fanOut: async ({ previous }) => (await previous.all()).map((text) => ({ text })) })
  .finalize(() => 'v2');

const KEY = 'job-types-key';
const dev = useDevServer(appRegistry(notesV1, notesV2), { functionKey: KEY });
const cli = (args: string[]) => startCli(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY } }).done;

interface Catalogue {
  jobTypes: Array<{
    jobType: string;
    version: number;
    newest: boolean;
    stages: Array<{ kind: string; name: string }>;
    parameters: Record<string, unknown>;
    signals: Array<{ name: string; stage: number; payload: Record<string, unknown> }>;
  }>;
  messages: Record<'submission' | 'signal' | 'receipt', Record<string, unknown>>;
  versionsInUse: Array<{ jobType: string; version: number; activeJobs: number; failedJobs: number; registered: boolean }>;
}

test('GET /api/job-types: each type with its stages and the JSON Schema of its parameters and signals; the message schemas', async () => {
  expect((await fetch(`${dev.server.url}/api/job-types`)).status).toBe(401);
  const response = await fetch(`${dev.server.url}/api/job-types`, { headers: { 'x-functions-key': KEY } });
  expect(response.status).toBe(200);
  const catalogue = (await response.json()) as Catalogue;
  expect(catalogue.jobTypes.map((type) => type.jobType)).toEqual(expect.arrayContaining(['approved_publish', 'hello_world', 'word_frequencies']));
  const hello = catalogue.jobTypes.find((type) => type.jobType === 'hello_world');
  expect(hello?.parameters).toMatchObject({ type: 'object', properties: { n: { type: 'integer', minimum: 1, maximum: 10_000 } }, required: ['n'] });
  expect(hello?.stages.map((stage) => stage.name)).toEqual(['greet', 'reply']);
  const gated = catalogue.jobTypes.find((type) => type.jobType === 'approved_publish');
  expect(gated?.signals).toEqual([
    { name: 'approval', stage: 2, payload: expect.objectContaining({ type: 'object', required: ['approvedBy', 'approved'] }) as unknown },
  ]);
  expect(catalogue.messages.submission).toMatchObject({
    type: 'object',
    required: expect.arrayContaining(['jobType']) as unknown,
    properties: expect.objectContaining({ replyTo: expect.anything() as unknown, correlationId: expect.anything() as unknown }) as unknown,
  });
  expect(JSON.stringify(catalogue.messages.receipt)).toContain('"accepted"');
  // Each registered version, newest first, with its own stages and schema.
  const notes = catalogue.jobTypes.filter((type) => type.jobType === 'catalogue.notes');
  expect(notes.map((type) => [type.version, type.newest, type.stages.length])).toEqual([
    [2, true, 2],
    [1, false, 1],
  ]);
  expect(notes[0]?.parameters).toMatchObject({ required: ['lines'] });
  expect(notes[1]?.parameters).toMatchObject({ required: ['text'] });
});

test('a submission names a version by header; the catalogue counts the unfinished jobs of each version', async () => {
  const submit = (body: unknown, version?: string) =>
    fetch(`${dev.server.url}/api/jobs/catalogue.notes`, {
      method: 'POST',
      headers: { 'x-functions-key': KEY, 'content-type': 'application/json', ...(version === undefined ? {} : { 'CoreMachine-Job-Version': version }) },
      body: JSON.stringify(body),
    });
  const old = await submit({ text: 'hi' }, '1');
  expect(old.status).toBe(202);
  expect(await old.json()).toMatchObject({ version: 1, totalStages: 1 });
  expect((await submit({ lines: ['a'] })).status).toBe(202);
  const missing = await submit({ text: 'hi' }, '7');
  expect(missing.status).toBe(404);
  expect(await missing.json()).toMatchObject({ error: { type: 'UnknownJobVersionError', message: expect.stringMatching(/version 7.*v1, v2/) as unknown } });
  for (const bad of ['0', 'one', '1.5', '99999999999']) expect((await submit({ text: 'hi' }, bad)).status).toBe(400);
  const catalogue = (await (await fetch(`${dev.server.url}/api/job-types`, { headers: { 'x-functions-key': KEY } })).json()) as Catalogue;
  for (const use of catalogue.versionsInUse.filter((entry) => entry.jobType === 'catalogue.notes')) {
    expect(use).toMatchObject({ registered: true, failedJobs: 0 });
    expect(use.activeJobs).toBeLessThanOrEqual(1);
  }
});

test('coremachine job-types lists them; job-type <type> prints its schemas; an unknown type is a usage error', async () => {
  const listed = await cli(['job-types']);
  expect(listed.code).toBe(0);
  expect(listed.stdout).toMatch(/^TYPE\s+VERSION\s+ACTIVE\s+STAGES\s+DESCRIPTION$/m);
  expect(listed.stdout).toMatch(/^approved_publish\s+v1\s+\d+\s+render → ⏸ approval → publish\s+renders n pages/m);
  expect(listed.stdout).toMatch(/^catalogue\.notes\s+v2\s+\d+\s+write → rewrite/m);
  expect(listed.stdout).toMatch(/^catalogue\.notes\s+v1 \(older\)\s+\d+\s+write/m);
  const one = await cli(['job-type', 'hello_world']);
  expect(one.code).toBe(0);
  expect(JSON.parse(one.stdout)).toMatchObject({ jobType: 'hello_world', parameters: { required: ['n'] } });
  expect(JSON.parse((await cli(['job-type', 'catalogue.notes'])).stdout)).toMatchObject({ version: 2, parameters: { required: ['lines'] } });
  expect(JSON.parse((await cli(['job-type', 'catalogue.notes', '--version', '1'])).stdout)).toMatchObject({ version: 1, parameters: { required: ['text'] } });
  const noSuchVersion = await cli(['job-type', 'catalogue.notes', '--version', '3']);
  expect([noSuchVersion.code, noSuchVersion.stderr]).toEqual([2, expect.stringContaining('has no version 3 (registered: v2, v1)')]);
  const submitted = await cli(['submit', 'catalogue.notes', '--params', '{"text":"cli"}', '--job-version', '1', '--wait']);
  expect(submitted.code).toBe(0);
  const jobId = /job ([0-9a-f]{64})/.exec(submitted.stdout)?.[1] ?? '';
  expect((await cli(['status', jobId])).stdout).toMatch(/^type\s+catalogue\.notes v1$/m);
  const refused = await cli(['submit', 'catalogue.notes', '--params', '{"text":"cli"}', '--job-version', '5']);
  expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining('UnknownJobVersionError')]);
  const badVersion = await cli(['job-type', 'catalogue.notes', '--version', '1e3']);
  expect([badVersion.code, badVersion.stderr]).toEqual([2, expect.stringContaining('--version must be a whole number')]);
  const unknown = await cli(['job-type', 'nope']);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toContain('no job type "nope"');
});
