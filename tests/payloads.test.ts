import { createHash } from 'node:crypto';
import { z } from 'zod';
import { defineJob, defineRemoteTask, defineTask, type JobEvent } from '../models';
import { CoreMachine } from '../core/engine/core-machine';
import { loadMigrations, migrate } from '../core/db/migrator';
import { AzureBlobPayloadStore } from '../core/payloads/azure-blob-store';
import { PayloadLimitError } from '../core/payloads/payload-errors';
import { DEFAULT_PAYLOAD_LIMITS, Payloads, type PayloadLimits } from '../core/payloads/payloads';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { startAzurite, type Azurite } from './support/azurite';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { createTestDatabase } from './support/test-database';

/**
 * Large values through the engine, against a real Azurite and PostgreSQL: task specs, results and
 * finalize results over the threshold live in blobs that only engine-written columns reference;
 * handlers, fan-outs, finalize and the API see values; missing or altered blobs fail their task or
 * job with a typed error; deletion and the orphan sweep leave no blob behind.
 */

const db = useTestDatabase();
let azurite: Azurite;
beforeAll(async () => {
  azurite = await startAzurite();
}, 60_000);
afterAll(async () => {
  await azurite.stop();
});

const THRESHOLD = 1024;
const CONTAINER = 'engine-payloads';
const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

const big = defineTask({
  type: 'pl.big',
  parameters: z.object({ i: z.number().int(), pad: z.string() }),
  // Retries allowed: a missing or altered blob must still fail at once.
  retry: { maxAttempts: 3, initialDelayMs: 10 },
  handler: ({ i, pad }) => ({ i, echo: pad }),
});
const measure = defineTask({
  type: 'pl.measure',
  parameters: z.object({ i: z.number().int(), length: z.number().int() }),
  handler: ({ i, length }) => ({ i, length }),
});
const bigJob = defineJob({ type: 'pl.big_job', parameters: z.object({ n: z.number().int(), bytes: z.number().int() }) })
  .stage({ name: 'big', task: big, fanOut: ({ parameters }) => range(parameters.n).map((i) => ({ i, pad: `${i}:`.padEnd(parameters.bytes, 'p') })) })
  .stage({
    name: 'measure',
    task: measure,
    // `previous` holds stored results: the fan-out reads values, lazily.
    fanOut: async function* ({ previous }) {
      for await (const result of previous) yield { i: result.i, length: result.echo.length };
    },
  })
  .finalize(async ({ previous, parameters }) => ({ lengths: (await previous.all()).map((r) => r.length), blob: 'f'.repeat(parameters.bytes * 2) }));

const echo = defineTask({ type: 'pl.echo', parameters: z.object({ value: z.unknown() }), handler: ({ value }) => value });
const echoJob = defineJob({ type: 'pl.echo_job', parameters: z.object({ value: z.unknown() }) })
  .stage({ name: 'echo', task: echo, fanOut: ({ parameters }) => [{ value: parameters.value }] })
  .finalize(async ({ previous }) => ({ seen: await previous.all() }));

const grow = defineTask({ type: 'pl.grow', parameters: z.object({ bytes: z.number().int() }), handler: ({ bytes }) => ({ data: 'g'.repeat(bytes) }) });
const growJob = defineJob({ type: 'pl.grow_job', parameters: z.object({ bytes: z.number().int(), pad: z.string().optional() }) })
  .stage({ name: 'grow', task: grow, fanOut: ({ parameters }) => [{ bytes: parameters.bytes }] })
  .finalize(({ previous }) => ({ results: previous.count }));

const render = defineRemoteTask({ type: 'pl.render', parameters: z.object({ scene: z.string() }), result: z.object({ image: z.string() }) });
const remoteJob = defineJob({ type: 'pl.remote_job', parameters: z.object({ bytes: z.number().int() }) })
  .stage({ name: 'render', task: render, fanOut: ({ parameters }) => [{ scene: 's'.repeat(parameters.bytes) }] })
  .finalize(async ({ previous }) => ({ imageLength: (await previous.all())[0]?.image.length }));

const registry = new Registry().register(bigJob, echoJob, growJob, remoteJob);
const store = () => new AzureBlobPayloadStore({ connectionString: azurite.connectionString, container: CONTAINER });
const withStore = (limits: Partial<PayloadLimits> = {}) => new Payloads(store(), { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: THRESHOLD, ...limits });

async function engine(payloads: Payloads, options: { worker?: boolean; retentionDays?: number } = {}) {
  const transport = new InProcessTransport();
  const logs: string[] = [];
  const machine = await CoreMachine.create({
    pool: db.pool,
    registry,
    transport,
    logger: captureLogger(logs),
    payloads,
    ...(options.retentionDays ? { retentionDays: options.retentionDays } : {}),
  });
  const worker =
    options.worker === false
      ? undefined
      : new InProcessWorker(machine, transport, captureLogger(logs), { taskBatchSize: 8, taskConcurrency: 2, jobConcurrency: 1 });
  return {
    machine,
    transport,
    logs,
    stop: async () => {
      await worker?.stop();
      await transport.close();
    },
  };
}

/** Every message waiting, handled once, by hand (no worker): the test decides what happens in between. */
async function step(machine: CoreMachine, transport: InProcessTransport): Promise<number> {
  const jobs = transport.jobs.receive(10);
  for (const message of jobs) {
    await machine.processJobMessage(message.body);
    transport.jobs.complete(message);
  }
  const tasks = transport.tasks.receive(100);
  if (tasks.length > 0) await machine.processTaskMessages(tasks.map((message) => message.body));
  for (const message of tasks) transport.tasks.complete(message);
  return jobs.length + tasks.length;
}

async function blobsOf(jobId: string): Promise<string[]> {
  const keys: string[] = [];
  let continuation: string | undefined;
  do {
    const page = await store().list({ continuation, maxResults: 1000 });
    keys.push(...page.items.map((item) => item.key).filter((key) => key.startsWith(`${jobId}/`)));
    continuation = page.continuation;
  } while (continuation);
  return keys.sort();
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

test('specs, results and the finalize result over the threshold live in blobs; fan-out, handlers, finalize and the API see values', async () => {
  const e = await engine(withStore());
  const events: JobEvent[] = [];
  e.machine.events.subscribe((event) => void events.push(event));
  try {
    const n = 12;
    const bytes = 3000;
    const { job } = await e.machine.submitJob('pl.big_job', { n, bytes });
    const done = await waitForJob(e.machine, job.jobId, 30_000);
    expect(done.status).toBe('COMPLETED');
    expect(done.result).toBeNull();
    const finalResult = { lengths: range(n).map(() => bytes), blob: 'f'.repeat(bytes * 2) };
    const finalJson = JSON.stringify(finalResult);
    expect(done.resultRef).toEqual({ size: Buffer.byteLength(finalJson), sha256: sha(finalJson), url: `/api/jobs/${job.jobId}/result` });
    // The job event says how large the stored result is, without copying it.
    const completed = events.find((event) => event.jobId === job.jobId && event.type === 'JobCompleted');
    expect(completed).toMatchObject({ resultBytes: Buffer.byteLength(finalJson) });
    expect(completed).not.toHaveProperty('result');

    // The rows: stage 1's specs and results are references only, stage 2's small values inline.
    const rows = await db.pool.query<{ stage: number; task_index: number; parameters: unknown; parameters_ref: unknown; result: unknown; result_ref: unknown }>(
      'SELECT stage, task_index, parameters, parameters_ref, result, result_ref FROM coremachine.tasks WHERE job_id = $1 ORDER BY stage, task_index',
      [job.jobId],
    );
    for (const row of rows.rows.filter((r) => r.stage === 1)) {
      expect(row.parameters).toBeNull();
      expect(row.result).toBeNull();
      expect(row.parameters_ref).toMatchObject({ size: expect.any(Number) as number, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) as string });
      expect(row.result_ref).toMatchObject({ key: expect.stringMatching(new RegExp(`^${job.jobId}/${job.jobId}-s1-t${row.task_index}/result/`)) as string });
    }
    for (const row of rows.rows.filter((r) => r.stage === 2)) {
      expect(row).toMatchObject({ parameters_ref: null, result_ref: null, result: { i: row.task_index, length: bytes } });
    }
    const jobRow = await db.pool.query<{ result: unknown; result_ref: { key: string } }>('SELECT result, result_ref FROM coremachine.jobs WHERE job_id = $1', [
      job.jobId,
    ]);
    expect(jobRow.rows[0]?.result).toBeNull();
    expect(jobRow.rows[0]?.result_ref.key).toBe(`${job.jobId}/job/result/${sha(finalJson)}`);
    // 12 specs + 12 results + the finalize result.
    expect(await blobsOf(job.jobId)).toHaveLength(2 * n + 1);

    // The API: references shown as links beside a null value, each value on its own route.
    const tasks = await e.machine.listTasks(job.jobId, { stage: '1' });
    const first = tasks[0];
    const spec = JSON.stringify({ i: 0, pad: '0:'.padEnd(bytes, 'p') });
    expect(first).toMatchObject({
      parameters: null,
      parametersRef: { size: spec.length, sha256: sha(spec), url: `/api/jobs/${job.jobId}/tasks/${job.jobId}-s1-t0/parameters` },
      result: null,
      resultRef: { url: `/api/jobs/${job.jobId}/tasks/${job.jobId}-s1-t0/result` },
    });
    const result = await e.machine.values.open({ jobId: job.jobId, taskId: `${job.jobId}-s1-t0`, field: 'result' });
    if (result.kind !== 'stored') throw new Error('expected a stored result');
    expect(JSON.parse(await readAll(result.stream))).toEqual({ i: 0, echo: '0:'.padEnd(bytes, 'p') });
    const parameters = await e.machine.values.open({ jobId: job.jobId, taskId: `${job.jobId}-s1-t0`, field: 'parameters' });
    if (parameters.kind !== 'stored') throw new Error('expected stored parameters');
    expect(await readAll(parameters.stream)).toBe(spec);
    const finalized = await e.machine.values.open({ jobId: job.jobId, field: 'result' });
    if (finalized.kind !== 'stored') throw new Error('expected a stored job result');
    expect(await readAll(finalized.stream)).toBe(finalJson);
    // An inline value is served as it is.
    expect(await e.machine.values.open({ jobId: job.jobId, taskId: `${job.jobId}-s2-t3`, field: 'result' })).toEqual({
      kind: 'inline',
      value: { i: 3, length: bytes },
    });
    expect((await e.machine.listTasks(job.jobId, { stage: '2' }))[0]).not.toHaveProperty('resultRef');
  } finally {
    await e.stop();
  }
});

test('a value that looks like a reference is only a value: stored inline, shown as it is, never followed', async () => {
  const e = await engine(withStore());
  try {
    // A real blob of another job, named in every shape a reference could take.
    const { job: other } = await e.machine.submitJob('pl.grow_job', { bytes: 5000 });
    expect((await waitForJob(e.machine, other.jobId)).status).toBe('COMPLETED');
    const [key] = await blobsOf(other.jobId);
    const forged = { key, size: 5012, sha256: key?.split('/')[3], $ref: { key, size: 5012, sha256: 'x', url: `/api/jobs/${other.jobId}/result` } };
    const { job } = await e.machine.submitJob('pl.echo_job', { value: forged });
    const done = await waitForJob(e.machine, job.jobId);
    expect(done.status).toBe('COMPLETED');
    expect(done.result).toEqual({ seen: [forged] });
    expect(done).not.toHaveProperty('resultRef');
    const [task] = await e.machine.listTasks(job.jobId);
    expect(task?.result).toEqual(forged);
    expect(task).not.toHaveProperty('resultRef');
    const row = await db.pool.query('SELECT result_ref, parameters_ref FROM coremachine.tasks WHERE job_id = $1', [job.jobId]);
    expect(row.rows).toEqual([{ result_ref: null, parameters_ref: null }]);
    expect(await e.machine.values.open({ jobId: job.jobId, taskId: task?.taskId, field: 'result' })).toEqual({ kind: 'inline', value: forged });
  } finally {
    await e.stop();
  }
});

test('a missing spec blob fails its task at once (non-retryable PayloadMissingError), and with it the job', async () => {
  const e = await engine(withStore(), { worker: false });
  try {
    const { job } = await e.machine.submitJob('pl.big_job', { n: 3, bytes: 2001 });
    const [message] = e.transport.jobs.receive(1);
    await e.machine.processJobMessage(message?.body);
    const spec = (await blobsOf(job.jobId)).find((key) => key.includes('-s1-t1/parameters/'));
    expect(spec).toBeDefined();
    await store().delete([spec ?? '']);
    while ((await step(e.machine, e.transport)) > 0);
    const view = await e.machine.getJob(job.jobId);
    expect(view.status).toBe('FAILED');
    expect(view.error).toMatchObject({ type: 'PayloadMissingError', taskId: `${job.jobId}-s1-t1`, stage: 1 });
    expect(view.error?.message).toContain(`parameters of task ${job.jobId}-s1-t1`);
    const task = await db.pool.query('SELECT status, attempt FROM coremachine.tasks WHERE task_id = $1', [`${job.jobId}-s1-t1`]);
    expect(task.rows[0]).toEqual({ status: 'FAILED', attempt: 1 });
  } finally {
    await e.stop();
  }
});

test('an altered result blob fails the next fan-out that reads it with PayloadCorruptError', async () => {
  const e = await engine(withStore(), { worker: false });
  try {
    const { job } = await e.machine.submitJob('pl.big_job', { n: 3, bytes: 2002 });
    const [message] = e.transport.jobs.receive(1);
    await e.machine.processJobMessage(message?.body);
    e.transport.jobs.complete(message!);
    const tasks = e.transport.tasks.receive(10);
    await e.machine.processTaskMessages(tasks.map((t) => t.body));
    for (const t of tasks) e.transport.tasks.complete(t);
    const result = (await blobsOf(job.jobId)).find((key) => key.includes('-s1-t2/result/'));
    await store().put(result ?? '', Buffer.from(JSON.stringify({ i: 2, echo: 'tampered' })));
    while ((await step(e.machine, e.transport)) > 0);
    const view = await e.machine.getJob(job.jobId);
    expect(view.status).toBe('FAILED');
    expect(view.error).toMatchObject({ type: 'FanOutError', stage: 2, cause: { type: 'PayloadCorruptError' } });
    expect(view.error?.cause?.message).toContain(`result 2 of stage 1 of job ${job.jobId}`);
  } finally {
    await e.stop();
  }
});

test('without a store: an oversize result fails its task naming the setting, oversize parameters are refused at submission', async () => {
  const e = await engine(new Payloads(undefined, { ...DEFAULT_PAYLOAD_LIMITS, inlineCapBytes: 4096 }));
  try {
    const { job } = await e.machine.submitJob('pl.grow_job', { bytes: 5001 });
    const done = await waitForJob(e.machine, job.jobId);
    expect(done.status).toBe('FAILED');
    expect(done.error).toMatchObject({ type: 'PayloadLimitError', taskId: `${job.jobId}-s1-t0` });
    expect(done.error?.message).toContain('over the 4096-byte limit of a value stored inline in PostgreSQL (COREMACHINE_PAYLOAD_INLINE_CAP_BYTES)');
    const { job: fine } = await e.machine.submitJob('pl.grow_job', { bytes: 3000 });
    expect((await waitForJob(e.machine, fine.jobId)).status).toBe('COMPLETED');

    const before = await db.pool.query('SELECT count(*)::int AS n FROM coremachine.jobs');
    const refused = await e.machine.submitJob('pl.grow_job', { bytes: 1, pad: 'x'.repeat(5000) }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(PayloadLimitError);
    expect((refused as Error).message).toMatch(
      /parameters for job type "pl.grow_job" is \d+ bytes of JSON, over the 4096-byte limit .*COREMACHINE_PAYLOAD_INLINE_CAP_BYTES/,
    );
    expect((await db.pool.query('SELECT count(*)::int AS n FROM coremachine.jobs')).rows).toEqual(before.rows);
  } finally {
    await e.stop();
  }
});

test('a remote worker gets values and reports values: stored parameters are read for it, a large result stored for it', async () => {
  const e = await engine(withStore());
  try {
    const { job } = await e.machine.submitJob('pl.remote_job', { bytes: 4000 });
    let claimed: Awaited<ReturnType<typeof e.machine.remote.claim>> = [];
    for (let i = 0; i < 200 && claimed.length === 0; i++) {
      claimed = await e.machine.remote.claim({ workerId: 'w1', taskTypes: ['pl.render'] });
      if (claimed.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(claimed[0]?.parameters).toEqual({ scene: 's'.repeat(4000) });
    await e.machine.remote.complete(claimed[0]!.taskId, { claimId: claimed[0]!.claimId, result: { image: 'i'.repeat(6000) } });
    const done = await waitForJob(e.machine, job.jobId);
    expect(done).toMatchObject({ status: 'COMPLETED', result: { imageLength: 6000 } });
    const row = await db.pool.query<{ result: unknown; result_ref: unknown }>('SELECT result, result_ref FROM coremachine.tasks WHERE job_id = $1', [
      job.jobId,
    ]);
    expect(row.rows[0]?.result).toBeNull();
    expect(row.rows[0]?.result_ref).toMatchObject({ size: JSON.stringify({ image: 'i'.repeat(6000) }).length });
  } finally {
    await e.stop();
  }
});

test('DELETE and retention delete the blobs with the rows', async () => {
  const e = await engine(withStore(), { retentionDays: 1 });
  try {
    const { job: deleted } = await e.machine.submitJob('pl.big_job', { n: 3, bytes: 2003 });
    const { job: expired } = await e.machine.submitJob('pl.big_job', { n: 4, bytes: 2003 });
    expect((await waitForJob(e.machine, deleted.jobId)).status).toBe('COMPLETED');
    expect((await waitForJob(e.machine, expired.jobId)).status).toBe('COMPLETED');
    expect(await blobsOf(deleted.jobId)).toHaveLength(7);
    expect(await blobsOf(expired.jobId)).toHaveLength(9);

    expect(await e.machine.deleteJob(deleted.jobId)).toMatchObject({ jobs: 1, tasks: 6, blobsDeleted: 7, blobsLeft: 0 });
    expect(await blobsOf(deleted.jobId)).toEqual([]);

    await db.pool.query("UPDATE coremachine.jobs SET finished_at = now() - interval '2 days' WHERE job_id = $1", [expired.jobId]);
    const report = await e.machine.sweep();
    expect(report.purged).toMatchObject({ jobs: 1, blobsDeleted: 9, blobsLeft: 0 });
    expect(await blobsOf(expired.jobId)).toEqual([]);
  } finally {
    await e.stop();
  }
});

test('a blob delete that fails after the rows are gone is reported to the caller (answer, janitor report, log), and the orphan sweep gets the blobs later', async () => {
  // The store answers, then refuses deletes (an outage of the storage account, a lost permission).
  const failing = store();
  const outage = new Error('storage account unreachable');
  failing.delete = () => Promise.reject(outage);
  const e = await engine(new Payloads(failing, { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: THRESHOLD }), { retentionDays: 1 });
  try {
    const { job: deleted } = await e.machine.submitJob('pl.big_job', { n: 2, bytes: 2003 });
    // Another n: a job's id follows from its parameters, and the same submission is the same job.
    const { job: expired } = await e.machine.submitJob('pl.big_job', { n: 3, bytes: 2003 });
    expect((await waitForJob(e.machine, deleted.jobId)).status).toBe('COMPLETED');
    expect((await waitForJob(e.machine, expired.jobId)).status).toBe('COMPLETED');

    const answer = await e.machine.deleteJob(deleted.jobId);
    expect(answer).toMatchObject({
      jobs: 1,
      blobsDeleted: 0,
      blobsLeft: 5,
      blobError: { type: 'PayloadStoreUnavailableError' },
    });
    expect(answer.blobError?.message).toContain('storage account unreachable');
    expect(await blobsOf(deleted.jobId)).toHaveLength(5);
    expect(e.logs.some((line) => line.includes("deleting the job's payload blobs failed") && line.includes('storage account unreachable'))).toBe(true);

    await db.pool.query("UPDATE coremachine.jobs SET finished_at = now() - interval '2 days' WHERE job_id = $1", [expired.jobId]);
    const report = await e.machine.sweep();
    expect(report.purged).toMatchObject({
      jobs: 1,
      blobsDeleted: 0,
      blobsLeft: 7,
      blobError: { type: 'PayloadStoreUnavailableError' },
    });
    expect(report.purged.blobError?.message).toContain('storage account unreachable');
    expect(e.logs.some((line) => line.includes("deleting the purged jobs' payload blobs failed"))).toBe(true);
    // Nothing references them: the orphan sweep, once the store deletes again, removes them.
    const janitor = await engine(withStore({ orphanGraceMs: 0 }), { worker: false });
    try {
      let sweep = await janitor.machine.sweep({ batchSize: 1000 });
      for (let i = 0; i < 20 && !sweep.orphanPayloads?.wrapped; i++) sweep = await janitor.machine.sweep({ batchSize: 1000 });
    } finally {
      await janitor.stop();
    }
    expect(await blobsOf(deleted.jobId)).toEqual([]);
    expect(await blobsOf(expired.jobId)).toEqual([]);
  } finally {
    await e.stop();
  }
});

test('the orphan sweep deletes unreferenced blobs past the grace period, and only those', async () => {
  const e = await engine(withStore({ orphanGraceMs: 0 }));
  try {
    const { job } = await e.machine.submitJob('pl.grow_job', { bytes: 5002 });
    expect((await waitForJob(e.machine, job.jobId)).status).toBe('COMPLETED');
    const [kept] = await blobsOf(job.jobId);
    // What a crash between a blob's write and its row's commit leaves: a well-formed name nothing references.
    const ghostJob = 'c'.repeat(64);
    const orphans = [`${ghostJob}/${ghostJob}-s1-t0/result/${'d'.repeat(64)}`, `${job.jobId}/${job.jobId}-s1-t0/result/${'e'.repeat(64)}`];
    const foreign = 'not-ours/readme.txt';
    for (const key of [...orphans, foreign]) await store().put(key, Buffer.from('{}'));

    // A grace period not yet over keeps them (a writer may be about to commit).
    const patient = await engine(withStore({ orphanGraceMs: 3_600_000 }), { worker: false });
    expect((await patient.machine.sweep()).orphanPayloads).toMatchObject({ deleted: 0 });
    await patient.stop();

    let report = await e.machine.sweep({ batchSize: 2 });
    for (let i = 0; i < 20 && !report.orphanPayloads?.wrapped; i++) report = await e.machine.sweep({ batchSize: 2 });
    report = await e.machine.sweep({ batchSize: 1000 });
    const remaining = new Set((await store().list({ maxResults: 5000 })).items.map((item) => item.key));
    for (const orphan of orphans) expect(remaining.has(orphan)).toBe(false);
    expect(remaining.has(kept ?? '')).toBe(true);
    expect(remaining.has(foreign)).toBe(true);
    const view = await e.machine.getJob(job.jobId);
    expect(view.status).toBe('COMPLETED');
    const [task] = await e.machine.listTasks(job.jobId);
    const opened = await e.machine.values.open({ jobId: job.jobId, taskId: task?.taskId, field: 'result' });
    expect(opened.kind).toBe('stored');
    if (opened.kind === 'stored') expect(JSON.parse(await readAll(opened.stream))).toEqual({ data: 'g'.repeat(5002) });
  } finally {
    await e.stop();
  }
});

test('the migration leaves the values stored before it inline and unchanged, whatever they look like', async () => {
  const old = await createTestDatabase({ migrate: false });
  try {
    await migrate(
      old.pool,
      loadMigrations().filter((m) => m.version < 19),
    );
    const jobId = 'e'.repeat(64);
    const lookalike = { key: `${jobId}/job/result/${'f'.repeat(64)}`, size: 10, sha256: 'f'.repeat(64) };
    await old.pool.query(
      `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters, result, finished_at) VALUES ($1, 'pl.echo_job', 'COMPLETED', 1, 1, $2, $2, now())`,
      [jobId, JSON.stringify({ value: lookalike })],
    );
    await old.pool.query(
      `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, result) VALUES ($1, $2, 1, 0, 'pl.echo', 'COMPLETED', $3, $3)`,
      [`${jobId}-s1-t0`, jobId, JSON.stringify(lookalike)],
    );
    await migrate(old.pool);
    const machine = await CoreMachine.create({
      pool: old.pool,
      registry,
      transport: new InProcessTransport(),
      logger: captureLogger([]),
      payloads: withStore(),
    });
    const view = await machine.getJob(jobId);
    expect(view.result).toEqual({ value: lookalike });
    expect(view).not.toHaveProperty('resultRef');
    const [task] = await machine.listTasks(jobId);
    expect(task).toMatchObject({ parameters: lookalike, result: lookalike });
    expect(task).not.toHaveProperty('resultRef');
    const refs = await old.pool.query(
      'SELECT t.parameters_ref, t.result_ref, j.result_ref AS job_ref FROM coremachine.tasks t JOIN coremachine.jobs j USING (job_id)',
    );
    expect(refs.rows).toEqual([{ parameters_ref: null, result_ref: null, job_ref: null }]);
  } finally {
    await old.drop();
  }
});
