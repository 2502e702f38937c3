import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { ValidationError } from '../core/errors';
import { jsonToStore, storableJson } from '../models/storable';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineTask } from '../models';
import { appRegistry } from './support/registry';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';

// PostgreSQL's jsonb refuses a NUL (and a lone surrogate) in any string. A value the engine stores
// that holds one used to fail its statement on every redelivery until the message was
// dead-lettered with a driver error; now the task, stage or submission that produced it fails at
// once with the path of the bad string, and an error whose text holds one is recorded escaped.
const db = useTestDatabase();

const probe = defineTask({
  type: 'unstorable.probe',
  parameters: z.object({ mode: z.string(), i: z.number().int() }),
  handler: ({ mode, i }): Promise<unknown> => {
    if (i === 0 && mode === 'result') return Promise.resolve({ nested: ['fine', 'bad\u0000'] });
    if (i === 0 && mode === 'throw') return Promise.reject(new Error('bad\u0000message'));
    return Promise.resolve({ i });
  },
});
const job = defineJob({ type: 'unstorable.job', parameters: z.object({ mode: z.string(), text: z.string().optional() }) })
  .stage({
    name: 'only',
    task: probe,
    fanOut: ({ parameters }) =>
      Array.from({ length: 4 }, (_, i) => ({ mode: parameters.mode, i, ...(parameters.mode === 'spec' && i === 2 ? { extra: '\ud800' } : {}) })),
  })
  .finalize(({ parameters }) => Promise.resolve(parameters.mode === 'finalize' ? { summary: 'x\u0000' } : { ok: true }));

async function start() {
  const transport = new InProcessTransport();
  const logger = captureLogger([]);
  const machine = await CoreMachine.create({ pool: db.pool, registry: appRegistry(job), transport, logger });
  const worker = new InProcessWorker(machine, transport, logger, { taskBatchSize: 8, taskConcurrency: 2, jobConcurrency: 1 });
  return {
    machine,
    transport,
    stop: async () => {
      await worker.stop();
      await transport.close();
    },
  };
}

test.each([
  ['result', 'TaskFailure', 'cannot be stored: nested.1: string contains a NUL'],
  ['throw', 'TaskHandlerError', 'bad\\u0000message'],
  ['spec', 'FanOutError', 'task spec 2 cannot be stored: extra: string contains a lone UTF-16 surrogate'],
  ['finalize', 'FinalizeError', 'its result cannot be stored: summary: string contains a NUL'],
])('a %s jsonb cannot hold fails the job at once with %s, never redelivered', async (mode, type, message) => {
  const h = await start();
  try {
    const { job: submitted } = await h.machine.submitJob('unstorable.job', { mode });
    const done = await waitForJob(h.machine, submitted.jobId);
    expect(done.status).toBe('FAILED');
    expect(JSON.stringify(done.error)).toContain(type);
    expect(JSON.stringify(done.error)).toContain(JSON.stringify(message).slice(1, -1));
    expect(h.transport.tasks.stats.abandoned + h.transport.jobs.stats.abandoned).toBe(0);
    expect(h.transport.tasks.deadLetters.length + h.transport.jobs.deadLetters.length).toBe(0);
    const attempts = (await h.machine.listTasks(submitted.jobId, { stage: 1 })).map((t) => t.attempt);
    expect(Math.max(0, ...attempts)).toBeLessThanOrEqual(1);
  } finally {
    await h.stop();
  }
});

test('parameters jsonb cannot hold are a ValidationError whoever submits, and nothing is stored', async () => {
  const h = await start();
  try {
    const before = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs')).rows[0]?.n;
    const byMessage = await h.machine.submitFromMessage({ jobType: 'unstorable.job', parameters: { mode: 'ok', text: 'a\u0000b' } }).catch((e: unknown) => e);
    expect(byMessage).toBeInstanceOf(ValidationError);
    const issues = (byMessage as ValidationError).issues as Array<{ path: unknown; message: string }>;
    expect(issues.map((issue) => issue.path)).toEqual([['text']]);
    expect(issues[0]?.message).toContain('NUL');
    await expect(h.machine.submitJob('unstorable.job', { mode: 'ok', text: '\udc00' })).rejects.toBeInstanceOf(ValidationError);
    expect((await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs')).rows[0]?.n).toBe(before);
  } finally {
    await h.stop();
  }
});

test('the check reads the JSON text first and tells an escaped backslash from a NUL', () => {
  const literal = { s: 'a\\u0000 is six characters here' };
  expect(jsonToStore(literal)).toEqual({ json: JSON.stringify(literal) });
  expect(jsonToStore({ s: 'x\u0000' }).problem).toContain('s: string contains a NUL');
  expect(jsonToStore({ 'k\ud800': 1 }).problem).toContain('key contains a lone UTF-16 surrogate');
  expect(jsonToStore({ emoji: '😀' })).toEqual({ json: '{"emoji":"😀"}' });
  expect(jsonToStore(() => 1)).toEqual({ problem: 'is not JSON-serialisable' });
  expect(storableJson([{ message: 'a\u0000b', path: ['\ud800'] }, literal])).toEqual([{ message: 'a\\u0000b', path: ['\ufffd'] }, literal]);
});
