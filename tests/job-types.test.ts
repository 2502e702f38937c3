/**
 * Producers not written in TypeScript build against JSON Schema: GET /api/job-types lists every
 * registered job type with the schema of its parameters and of its signals' payloads, and the
 * schemas of the submissions queue's messages and receipts; the CLI prints them.
 */
import { startCli } from './support/cli-run';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

const KEY = 'job-types-key';
const dev = useDevServer(appRegistry(), { functionKey: KEY });
const cli = (args: string[]) => startCli(args, { isTTY: false, env: { COREMACHINE_URL: dev.server.url, COREMACHINE_FUNCTION_KEY: KEY } }).done;

interface Catalogue {
  jobTypes: Array<{
    jobType: string;
    stages: Array<{ kind: string; name: string }>;
    parameters: Record<string, unknown>;
    signals: Array<{ name: string; stage: number; payload: Record<string, unknown> }>;
  }>;
  messages: Record<'submission' | 'signal' | 'receipt', Record<string, unknown>>;
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
});

test('coremachine job-types lists them; job-type <type> prints its schemas; an unknown type is a usage error', async () => {
  const listed = await cli(['job-types']);
  expect(listed.code).toBe(0);
  expect(listed.stdout).toMatch(/^TYPE\s+STAGES\s+DESCRIPTION$/m);
  expect(listed.stdout).toMatch(/^approved_publish\s+render → ⏸ approval → publish\s+renders n pages/m);
  const one = await cli(['job-type', 'hello_world']);
  expect(one.code).toBe(0);
  expect(JSON.parse(one.stdout)).toMatchObject({ jobType: 'hello_world', parameters: { required: ['n'] } });
  const unknown = await cli(['job-type', 'nope']);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toContain('no job type "nope"');
});
