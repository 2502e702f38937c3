import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineTask, type BulkOutcome } from '../models';
import { setAppContext } from '../functions/app-context';
import { bulkJobsHandler } from '../functions/http-bulk';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { call, ErrorReply, rowCounts } from './support/http-invoke';

// Issue 26 item 4: bulk cancel, retry and delete by filter (job type, status, label, time range),
// each job in its own transaction, with a dry run; a job that cannot take the action is listed
// with the reason, never a 500. Two engines on one database, as in Azure.

let transport: InProcessTransport;
const engines: Array<{ machine: CoreMachine; worker: InProcessWorker }> = [];
// Before the database's hooks: jest runs afterAll in declaration order, and the workers stop first.
afterAll(async () => {
  openGate();
  setAppContext(undefined);
  for (const { worker } of engines) await worker.stop();
  await transport.close();
});
const db = useTestDatabase();

let broken = true;
const quick = defineTask({ type: 'bulk.quick', parameters: z.object({ tag: z.string() }), handler: ({ tag }) => ({ tag }) });
const quickJob = defineJob({ type: 'bulk.quick', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'only', task: quick, fanOut: ({ parameters }) => [{ tag: parameters.tag }] })
  .finalize(({ parameters }) => ({ tag: parameters.tag }));
const flaky = defineTask({
  type: 'bulk.flaky',
  parameters: z.object({ tag: z.string() }),
  handler: ({ tag }) => {
    if (broken) throw new Error(`${tag} is broken`);
    return { tag };
  },
});
const flakyJob = defineJob({ type: 'bulk.flaky', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'only', task: flaky, fanOut: ({ parameters }) => [{ tag: parameters.tag }] })
  .finalize(() => ({}));
let openGate: () => void = () => undefined;
const gate = new Promise<void>((resolve) => (openGate = resolve));
const held = defineTask({
  type: 'bulk.held',
  parameters: z.object({ tag: z.string() }),
  handler: async (_, ctx) => {
    await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
    return {};
  },
});
const heldJob = defineJob({ type: 'bulk.held', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'only', task: held, fanOut: ({ parameters }) => [{ tag: parameters.tag }] })
  .finalize(() => ({}));

beforeAll(async () => {
  transport = new InProcessTransport();
  for (const pool of [db.pool, db.newPool(6)]) {
    const logger = captureLogger([]);
    const machine = await CoreMachine.create({ pool, registry: new Registry().register(quickJob, flakyJob, heldJob), transport, logger });
    engines.push({ machine, worker: new InProcessWorker(machine, transport, logger, { taskBatchSize: 8, taskConcurrency: 2, jobConcurrency: 2 }) });
  }
  setAppContext({ machine: engines[1]?.machine as CoreMachine, pool: db.pool, transport, logger: captureLogger([]) });
});

const machine = () => engines[0]?.machine as CoreMachine;

async function bulk(action: string, body: unknown): Promise<{ status: number; body: BulkOutcome }> {
  const reply = await call(bulkJobsHandler, 'POST', `bulk/jobs/${action}`, { params: { action }, body: JSON.stringify(body) });
  return { status: reply.status, body: reply.body as BulkOutcome };
}

async function submit(type: string, tag: string, batch: string): Promise<string> {
  const { job } = await machine().submitJob(type, { tag }, { labels: { batch } });
  return job.jobId;
}

async function statusOf(jobId: string): Promise<string | undefined> {
  return (await db.pool.query<{ status: string }>('SELECT status FROM coremachine.jobs WHERE job_id = $1', [jobId])).rows[0]?.status;
}

test('cancel, retry and delete by label, status, type and time: dry runs change nothing, refusals are listed with the reason', async () => {
  const done = [await submit('bulk.quick', 'a', 'b1'), await submit('bulk.quick', 'b', 'b1'), await submit('bulk.quick', 'c', 'b1')];
  const failing = [await submit('bulk.flaky', 'd', 'b1'), await submit('bulk.flaky', 'e', 'b1')];
  // Apart in time from the jobs before it (the time filter below splits there, to the millisecond).
  await new Promise((resolve) => setTimeout(resolve, 15));
  const running = await submit('bulk.held', 'f', 'b1');
  const other = await submit('bulk.quick', 'g', 'other');
  for (const jobId of [...done, ...failing, other]) await waitForJob(machine(), jobId);
  for (let i = 0; i < 200 && (await statusOf(running)) !== 'PROCESSING'; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(await Promise.all([...done, ...failing, running, other].map(statusOf))).toEqual([
    'COMPLETED',
    'COMPLETED',
    'COMPLETED',
    'FAILED',
    'FAILED',
    'PROCESSING',
    'COMPLETED',
  ]);

  // Cancel, dry run: the running job would be cancelled, the five ended ones cannot be; nothing changes.
  const before = await rowCounts(db.pool);
  const dry = await bulk('cancel', { filter: { label: 'batch:b1' }, dryRun: true });
  expect(dry.status).toBe(200);
  expect(dry.body).toMatchObject({ action: 'cancel', dryRun: true, counts: { matched: 6, changed: 1, refused: 5 }, changed: [running], nextCursor: null });
  expect(dry.body.refused.map((r) => [r.jobId, r.status]).sort()).toEqual(
    [...done.map((id) => [id, 'COMPLETED']), ...failing.map((id) => [id, 'FAILED'])].sort(),
  );
  expect(dry.body.refused[0]?.reason).toMatch(/cannot be cancelled \(cancel applies to QUEUED, PROCESSING, PAUSED\)/);
  expect(await rowCounts(db.pool)).toEqual(before);

  // Cancel: the same answer, now done; the job of another label is untouched.
  const cancelled = await bulk('cancel', { filter: { label: ['batch:b1'] } });
  expect(cancelled.body).toMatchObject({ dryRun: false, counts: { matched: 6, changed: 1, refused: 5 }, changed: [running] });
  expect(cancelled.body.refused.find((r) => r.jobId === done[0])?.reason).toMatch(/invalid job transition COMPLETED → CANCELLED/);
  expect(await statusOf(running)).toBe('CANCELLED');
  expect(await statusOf(other)).toBe('COMPLETED');

  // Retry by type and status: only the failed jobs, and they complete now that their task works.
  broken = false;
  expect((await bulk('retry', { filter: { jobType: 'bulk.flaky', status: 'FAILED' }, dryRun: true })).body.changed.sort()).toEqual([...failing].sort());
  const retried = await bulk('retry', { filter: { jobType: 'bulk.flaky', status: ['FAILED', 'CANCELLED'] } });
  expect(retried.body).toMatchObject({ counts: { matched: 2, changed: 2, refused: 0 } });
  for (const jobId of failing) expect((await waitForJob(machine(), jobId)).status).toBe('COMPLETED');
  // A retry of jobs that did not fail refuses each with the reason.
  const notFailed = await bulk('retry', { filter: { label: 'batch:b1', status: 'COMPLETED' } });
  expect(notFailed.body.counts).toEqual({ matched: 5, changed: 0, refused: 5 });
  expect(notFailed.body.refused[0]?.reason).toMatch(/only a FAILED job can be retried/);

  // A time range: only the jobs created before the running one (all of batch b1 but it).
  const runningCreated = (await machine().getJob(running)).createdAt.toISOString();
  const window = await bulk('delete', { filter: { label: 'batch:b1', createdBefore: runningCreated }, dryRun: true });
  expect(window.body.changed.sort()).toEqual([...done, ...failing].sort());
  const since = await bulk('delete', { filter: { label: 'batch:b1', createdAfter: runningCreated }, dryRun: true });
  expect(since.body.changed).toEqual([running]);

  // Delete, two at a time: a cursor goes on where the last call stopped; every b1 job goes, the other stays.
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let call = 0; call < 5; call++) {
    const page = await bulk('delete', { filter: { label: 'batch:b1' }, limit: 2, ...(cursor ? { cursor } : {}) });
    expect(page.status).toBe(200);
    expect(page.body.counts.refused).toBe(0);
    seen.push(...page.body.changed);
    cursor = page.body.nextCursor ?? undefined;
    if (!cursor) break;
  }
  expect(seen.sort()).toEqual([...done, ...failing, running].sort());
  for (const jobId of seen) expect(await statusOf(jobId)).toBeUndefined();
  expect(await statusOf(other)).toBe('COMPLETED');
  expect((await bulk('delete', { filter: { label: 'batch:b1' } })).body.counts).toEqual({ matched: 0, changed: 0, refused: 0 });
});

test('a running job cannot be deleted: listed with the reason while the ended ones go', async () => {
  const ended = await submit('bulk.quick', 'h', 'b2');
  await waitForJob(machine(), ended);
  const running = await submit('bulk.held', 'i', 'b2');
  for (let i = 0; i < 200 && (await statusOf(running)) !== 'PROCESSING'; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  const deleted = await bulk('delete', { filter: { label: 'batch:b2' } });
  expect(deleted.body).toMatchObject({ counts: { matched: 2, changed: 1, refused: 1 }, changed: [ended] });
  expect(deleted.body.refused).toEqual([
    { jobId: running, status: 'PROCESSING', reason: expect.stringMatching(/only a finished job .* can be deleted; cancel it first/) as unknown },
  ]);
  expect(await statusOf(running)).toBe('PROCESSING');
  await machine().cancelJob(running);
});

test('bad input is a 400 with the zod issues, and nothing changes', async () => {
  const before = await rowCounts(db.pool);
  const cases: Array<[string, unknown, RegExp]> = [
    ['cancel', { filter: {} }, /give at least one filter/],
    ['cancel', {}, /filter/],
    ['cancel', { filter: { status: 'NOPE' } }, /filter\.status/],
    ['purge', { filter: { status: 'FAILED' } }, /action/],
    ['delete', { filter: { createdAfter: 'yesterday' } }, /filter\.createdAfter: a time is ISO 8601 with a zone/],
    ['delete', { filter: { createdAfter: '2026-05-01T00:00:00' } }, /a time is ISO 8601 with a zone/],
    ['delete', { filter: { createdAfter: '2026-05-02T00:00:00Z', createdBefore: '2026-05-01T00:00:00Z' } }, /createdAfter must be before createdBefore/],
    ['delete', { filter: { label: 'nocolon' } }, /key:value/],
    ['delete', { filter: { jobType: 'x' }, limit: 0 }, /limit: expected at least 1/],
    ['delete', { filter: { jobType: 'x' }, limit: 1001 }, /limit: expected at most 1000/],
    ['delete', { filter: { jobType: 'x' }, cursor: 'abc' }, /cursor/],
    ['delete', { filter: { jobType: 'x' }, dryrun: true }, /dryrun/],
    ['delete', { filter: { jobType: 'x', tenant: 'y' } }, /tenant/],
    ['delete', [], /expected object/],
  ];
  for (const [action, body, issue] of cases) {
    const reply = await call(bulkJobsHandler, 'POST', `bulk/jobs/${action}`, { params: { action }, body: JSON.stringify(body) });
    const { error } = ErrorReply.parse(reply.body);
    const issues = (error.issues as Array<{ path: unknown[]; message: string }> | undefined)?.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    expect({ action, body, status: reply.status, type: error.type }).toEqual({ action, body, status: 400, type: 'ValidationError' });
    expect(`${JSON.stringify(body)} → ${issues ?? ''}`).toMatch(issue);
  }
  const empty = await call(bulkJobsHandler, 'POST', 'bulk/jobs/cancel', { params: { action: 'cancel' } });
  expect(empty.status).toBe(400);
  expect(await rowCounts(db.pool)).toEqual(before);
});
