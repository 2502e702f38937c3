import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type pg from 'pg';
import { CoreMachine } from '../core/engine/core-machine';
import { InvalidTransitionError, RerunRefusedError, ValidationError } from '../core/errors';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { LocalPayloadStore } from '../core/payloads/local-store';
import { DEFAULT_PAYLOAD_LIMITS, Payloads } from '../core/payloads/payloads';
import { defineJob, defineTask, type RerunOutcome } from '../models';
import { setAppContext } from '../functions/app-context';
import { rerunTasksHandler } from '../functions/http-rerun';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { call, ErrorReply, rowCounts } from './support/http-invoke';

// Issue 26 item 4: targeted re-runs. Chosen tasks of a finished stage run again (by id, by status,
// by a result field), and what depends on them (the stages after it, finalize) is recomputed. Two
// engines share one database and one transport whose duplicate detection is on (as Service Bus's
// is), so a re-run that reused the first run's message ids would be dropped and never finish.

// Declared before the database's hooks: jest runs afterAll hooks in declaration order, and the
// workers must stop before the database is dropped.
afterAll(async () => {
  openGate();
  setAppContext(undefined);
  for (const { worker } of engines) await worker.stop();
  await transport.close();
});
const db = useTestDatabase();

/** What the handlers read from outside: changed between runs, so a re-run's results differ from the first run's. */
const outside = { offset: 0, broken: new Set<number>() };
const runs = { measure: new Map<number, number>(), sum: 0, finalize: 0 };
/** The tasks whose result says `check.flag: "recheck"`: what the result-field filter chooses. */
const RECHECK = [11, 500, 998];

const measure = defineTask({
  type: 'rerun.measure',
  parameters: z.object({ i: z.number().int() }),
  handler: ({ i }) => {
    runs.measure.set(i, (runs.measure.get(i) ?? 0) + 1);
    return { i, value: i + outside.offset, check: { flag: RECHECK.includes(i) ? 'recheck' : 'ok' } };
  },
});
const sum = defineTask({
  type: 'rerun.sum',
  parameters: z.object({ part: z.number().int(), values: z.array(z.number()) }),
  handler: ({ values }) => {
    runs.sum++;
    return { sum: values.reduce((a, b) => a + b, 0) };
  },
});
const report = defineJob({ type: 'rerun.report', parameters: z.object({ n: z.number().int().min(4) }) })
  .stage({ name: 'measure', task: measure, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
  .stage({
    name: 'sum',
    task: sum,
    fanOut: async ({ previous }) => {
      const values = (await previous.all()).map((r) => r.value);
      const quarter = Math.ceil(values.length / 4);
      return [0, 1, 2, 3].map((part) => ({ part, values: values.slice(part * quarter, (part + 1) * quarter) }));
    },
  })
  .finalize(async ({ previous }) => {
    runs.finalize++;
    const sums = (await previous.all()).map((r) => r.sum);
    return { total: sums.reduce((a, b) => a + b, 0), parts: sums.length };
  });

const item = defineTask({
  type: 'rerun.item',
  parameters: z.object({ i: z.number().int() }),
  handler: ({ i }) => {
    if (outside.broken.has(i)) throw new Error(`item ${i} is broken`);
    return { i };
  },
});
const fragile = defineJob({ type: 'rerun.fragile', parameters: z.object({ n: z.number().int().min(1) }) })
  .stage({ name: 'items', task: item, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
  .finalize(async ({ previous }) => ({ items: (await previous.all()).length }));

const tolerant = defineJob({ type: 'rerun.tolerant', parameters: z.object({ n: z.number().int().min(1) }) })
  .stage({
    name: 'items',
    task: item,
    failurePolicy: { kind: 'tolerate', maxFailures: 5 },
    fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })),
  })
  .finalize(async ({ previous }) => ({ items: (await previous.all()).length }));

let openGate: () => void = () => undefined;
const gate = new Promise<void>((resolve) => (openGate = resolve));
const held = defineTask({
  type: 'rerun.held',
  parameters: z.object({}),
  handler: async (_, ctx) => {
    await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))]);
    return {};
  },
});
const holding = defineJob({ type: 'rerun.holding', parameters: z.object({ tag: z.string() }) })
  .stage({ name: 'held', task: held, fanOut: () => [{}] })
  .finalize(() => ({}));

interface Engine {
  machine: CoreMachine;
  worker: InProcessWorker;
}
let transport: InProcessTransport;
let engines: Engine[] = [];

async function engine(pool: pg.Pool): Promise<Engine> {
  const logger = captureLogger([]);
  const machine = await CoreMachine.create({ pool, registry: new Registry().register(report, fragile, tolerant, holding), transport, logger });
  return { machine, worker: new InProcessWorker(machine, transport, logger, { taskBatchSize: 16, taskConcurrency: 4, jobConcurrency: 2 }) };
}

beforeAll(async () => {
  transport = new InProcessTransport({ duplicateDetectionWindowMs: 10 * 60_000 });
  engines = [await engine(db.pool), await engine(db.newPool(6))];
  const [, second] = engines;
  if (second) setAppContext({ machine: second.machine, pool: db.pool, transport, logger: captureLogger([]) });
});

const first = () => (engines[0] as Engine).machine;
const second = () => (engines[1] as Engine).machine;

async function tasksOf(jobId: string, stage: number): Promise<Array<{ task_id: string; task_index: number; status: string; attempt: number }>> {
  const result = await db.pool.query<{ task_id: string; task_index: number; status: string; attempt: number }>(
    'SELECT task_id, task_index, status, attempt FROM coremachine.tasks WHERE job_id = $1 AND stage = $2 ORDER BY task_index',
    [jobId, stage],
  );
  return result.rows;
}

const totalOf = (n: number, offsetOf: (i: number) => number) => Array.from({ length: n }, (_, i) => i + offsetOf(i)).reduce((a, b) => a + b, 0);

test('a 1,000-task stage: re-running 3 tasks by id, then 3 by a result field, runs only those and recomputes the later stage and finalize', async () => {
  const { job } = await first().submitJob('rerun.report', { n: 1000 });
  const ended = await waitForJob(first(), job.jobId, 60_000);
  expect(ended).toMatchObject({ status: 'COMPLETED', result: { total: totalOf(1000, () => 0), parts: 4 } });
  expect(runs.measure.size).toBe(1000);
  expect([...runs.measure.values()].every((count) => count === 1)).toBe(true);
  expect({ sum: runs.sum, finalize: runs.finalize }).toEqual({ sum: 4, finalize: 1 });
  const stage1 = await tasksOf(job.jobId, 1);
  const chosen = [stage1[3], stage1[404], stage1[777]].map((task) => task?.task_id ?? '');

  // A dry run says what would change and changes nothing.
  const before = await rowCounts(db.pool);
  const dry = await second().rerunTasks(job.jobId, { stage: 1, taskIds: chosen, dryRun: true });
  expect(dry).toMatchObject({ dryRun: true, stage: 1, selected: 3, taskIds: chosen, unfinished: 0, recomputedStages: [2], reruns: 0 });
  expect(dry.job).toMatchObject({ status: 'COMPLETED', result: ended.result });
  expect(await rowCounts(db.pool)).toEqual(before);

  // The outside value changes: the chosen tasks' new results differ, and so must the total.
  outside.offset = 1_000_000;
  const started = Date.now();
  const rerun = await second().rerunTasks(job.jobId, { stage: 1, taskIds: chosen });
  const rerunMs = Date.now() - started;
  expect(rerun).toMatchObject({ dryRun: false, selected: 3, unfinished: 0, recomputedStages: [2], reruns: 1 });
  // The answer's job is read after the commit: the workers may already have moved it on.
  expect(rerun.job.jobId).toBe(job.jobId);
  const again = await waitForJob(first(), job.jobId, 60_000);
  const doneMs = Date.now() - started;
  expect(again).toMatchObject({ status: 'COMPLETED', result: { total: totalOf(1000, (i) => ([3, 404, 777].includes(i) ? 1_000_000 : 0)), parts: 4 } });
  expect(again.stages).toMatchObject([
    { stage: 1, status: 'COMPLETED', total: 1000, completed: 1000, failed: 0 },
    { stage: 2, status: 'COMPLETED', total: 4, completed: 4, failed: 0 },
  ]);
  // Only the chosen tasks ran again, at their next attempt; the later stage and finalize ran again whole.
  const ranTwice = [...runs.measure].filter(([, count]) => count > 1).map(([i]) => i);
  expect(ranTwice.sort((a, b) => a - b)).toEqual([3, 404, 777]);
  expect(runs.measure.size).toBe(1000);
  const attempts = await tasksOf(job.jobId, 1);
  expect(attempts.filter((task) => task.attempt !== 1).map((task) => [task.task_index, task.attempt])).toEqual([
    [3, 2],
    [404, 2],
    [777, 2],
  ]);
  expect({ sum: runs.sum, finalize: runs.finalize }).toEqual({ sum: 8, finalize: 2 });
  expect((await tasksOf(job.jobId, 2)).map((task) => task.attempt)).toEqual([1, 1, 1, 1]);
  // Stage 2 was started and fanned out again under new message ids: duplicate detection dropped none of them.
  expect(transport.jobs.stats.duplicatesDropped + transport.tasks.stats.duplicatesDropped).toBe(0);
  process.stdout.write(`[targeted-reruns] re-run of 3 of 1,000 tasks: committed in ${rerunMs} ms, job COMPLETED again ${doneMs} ms after the call\n`);

  // The trail: the re-run's own event, the job's COMPLETED → QUEUED, and each chosen task's COMPLETED → QUEUED.
  const events = await first().listEvents(job.jobId, { limit: 5000 });
  const rerunEvents = events.filter((event) => event.entity === 'rerun');
  expect(rerunEvents).toEqual([
    expect.objectContaining({
      stage: 1,
      from: 'COMPLETED',
      to: 'QUEUED',
      rerun: { rerun: 1, selected: 3, unfinished: 0, taskIds: chosen, filter: { taskIds: 3 }, recomputedStages: [2] },
    }),
  ]);
  expect(events.filter((event) => event.entity === 'job' && event.from === 'COMPLETED' && event.to === 'QUEUED')).toHaveLength(1);
  expect(
    events
      .filter((event) => event.entity === 'task' && event.from === 'COMPLETED' && event.to === 'QUEUED')
      .map((event) => event.taskId)
      .sort(),
  ).toEqual([...chosen].sort());

  // By a result field (a nested path): the three tasks flagged "recheck", and nothing else.
  outside.offset = 2_000_000;
  const byField = await first().rerunTasks(job.jobId, { stage: 1, resultField: { path: 'check.flag', equals: 'recheck' } });
  expect(byField).toMatchObject({ selected: 3, unexamined: 0, reruns: 2, taskIds: RECHECK.map((i) => stage1[i]?.task_id) });
  const third = await waitForJob(second(), job.jobId, 60_000);
  const offsets = (i: number) => (RECHECK.includes(i) ? 2_000_000 : [3, 404, 777].includes(i) ? 1_000_000 : 0);
  expect(third).toMatchObject({ status: 'COMPLETED', result: { total: totalOf(1000, offsets), parts: 4 } });
  expect([...runs.measure].filter(([i, count]) => count !== (RECHECK.includes(i) || [3, 404, 777].includes(i) ? 2 : 1))).toEqual([]);
  expect({ sum: runs.sum, finalize: runs.finalize }).toEqual({ sum: 12, finalize: 3 });

  // By status with a field that matches nothing: refused (nothing to run); the dry run says 0.
  expect(await first().rerunTasks(job.jobId, { stage: 1, status: 'FAILED', dryRun: true })).toMatchObject({ selected: 0, taskIds: [] });
  await expect(first().rerunTasks(job.jobId, { stage: 1, status: 'FAILED' })).rejects.toBeInstanceOf(RerunRefusedError);
  // Stage 2 can be re-run on its own: only finalize follows.
  expect(await first().rerunTasks(job.jobId, { stage: 2, taskIds: [(await tasksOf(job.jobId, 2))[0]?.task_id ?? ''], dryRun: true })).toMatchObject({
    selected: 1,
    recomputedStages: [],
  });
}, 120_000);

test('re-running the FAILED tasks of a FAILED job (with those its failure cancelled) completes it', async () => {
  outside.broken = new Set([5, 17]);
  const { job } = await first().submitJob('rerun.fragile', { n: 40 });
  const failed = await waitForJob(first(), job.jobId, 30_000);
  expect(failed.status).toBe('FAILED');
  const stopped = await tasksOf(job.jobId, 1);
  const failedIds = stopped.filter((task) => task.status === 'FAILED').map((task) => task.task_id);
  const cancelled = stopped.filter((task) => task.status === 'CANCELLED').length;
  expect(failedIds.length).toBeGreaterThanOrEqual(1);

  outside.broken = new Set();
  const dry = await second().rerunTasks(job.jobId, { stage: 1, status: 'FAILED', dryRun: true });
  expect(dry).toMatchObject({ selected: failedIds.length, unfinished: cancelled, recomputedStages: [] });
  const rerun = await second().rerunTasks(job.jobId, { stage: 1, status: 'FAILED' });
  expect(rerun).toMatchObject({ selected: failedIds.length, unfinished: cancelled, reruns: 1 });
  const done = await waitForJob(first(), job.jobId, 30_000);
  expect(done).toMatchObject({ status: 'COMPLETED', error: null, result: { items: 40 } });
  expect((await tasksOf(job.jobId, 1)).every((task) => task.status === 'COMPLETED')).toBe(true);
  const events = await first().listEvents(job.jobId, { limit: 5000 });
  expect(events.filter((event) => event.entity === 'rerun').map((event) => [event.from, event.to, event.rerun?.filter])).toEqual([
    ['FAILED', 'QUEUED', { status: 'FAILED' }],
  ]);
});

test('a COMPLETED_WITH_ERRORS job: re-running its failed tasks makes it COMPLETED, with every result in finalize', async () => {
  outside.broken = new Set([2, 3]);
  const { job } = await first().submitJob('rerun.tolerant', { n: 10 });
  const tolerated = await waitForJob(first(), job.jobId, 30_000);
  expect(tolerated).toMatchObject({ status: 'COMPLETED_WITH_ERRORS', result: { items: 8 }, error: { type: 'TasksFailedError' } });
  outside.broken = new Set();
  expect(await second().rerunTasks(job.jobId, { stage: 1, status: 'FAILED' })).toMatchObject({ selected: 2, unfinished: 0 });
  expect(await waitForJob(first(), job.jobId, 30_000)).toMatchObject({ status: 'COMPLETED', result: { items: 10 }, error: null });
  const events = await first().listEvents(job.jobId, { limit: 5000 });
  expect(events.filter((event) => event.entity === 'rerun').map((event) => event.from)).toEqual(['COMPLETED_WITH_ERRORS']);
});

test('more than 10,000 chosen tasks are refused, by ids (400) and by a filter (409), dry run included', async () => {
  const { job } = await first().submitJob('rerun.fragile', { n: 10_001 });
  expect((await waitForJob(first(), job.jobId, 120_000)).status).toBe('COMPLETED');
  const ids = Array.from({ length: 10_001 }, (_, i) => `${job.jobId}-s1-t${i}`);
  await expect(first().rerunTasks(job.jobId, { stage: 1, taskIds: ids })).rejects.toMatchObject({
    type: 'ValidationError',
    issues: [expect.objectContaining({ path: ['taskIds'], message: 'a re-run takes at most 10000 tasks' })],
  });
  for (const dryRun of [true, false]) {
    await expect(first().rerunTasks(job.jobId, { stage: 1, status: 'COMPLETED', dryRun })).rejects.toThrow(
      /more than 10000 of its tasks match, and one re-run takes at most 10000: narrow the selection/,
    );
  }
  // 10,000 exactly is one re-run.
  expect(await first().rerunTasks(job.jobId, { stage: 1, taskIds: ids.slice(1), dryRun: true })).toMatchObject({ selected: 10_000 });
  const started = Date.now();
  expect(await first().rerunTasks(job.jobId, { stage: 1, status: 'COMPLETED', resultField: { path: 'i', equals: 0 } })).toMatchObject({ selected: 1 });
  const one = Date.now() - started;
  await waitForJob(first(), job.jobId, 60_000);
  const begun = Date.now();
  expect(await first().rerunTasks(job.jobId, { stage: 1, taskIds: ids.slice(1) })).toMatchObject({ selected: 10_000 });
  const committed = Date.now() - begun;
  expect(await waitForJob(first(), job.jobId, 120_000)).toMatchObject({ status: 'COMPLETED', result: { items: 10_001 } });
  process.stdout.write(
    `[targeted-reruns] 10,001-task stage: re-run of 1 task by a result field committed in ${one} ms; of 10,000 by ids in ${committed} ms, COMPLETED again after ${Date.now() - begun} ms\n`,
  );
}, 180_000);

test('two engines re-running the same job at once: one re-run happens, the other is refused with 409', async () => {
  const { job } = await first().submitJob('rerun.report', { n: 8 });
  expect((await waitForJob(first(), job.jobId, 30_000)).status).toBe('COMPLETED');
  const taskIds = (await tasksOf(job.jobId, 1)).slice(0, 2).map((task) => task.task_id);
  const outcomes = await Promise.allSettled([first(), second()].map((machine) => machine.rerunTasks(job.jobId, { stage: 1, taskIds })));
  expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
  const lost = outcomes.flatMap((o): unknown[] => (o.status === 'rejected' ? [o.reason as unknown] : []));
  expect(lost).toEqual([expect.any(InvalidTransitionError)]);
  expect((await waitForJob(second(), job.jobId, 30_000)).status).toBe('COMPLETED');
  const events = await first().listEvents(job.jobId, { limit: 5000 });
  expect(events.filter((event) => event.entity === 'rerun')).toHaveLength(1);
});

test('over HTTP: a running job is refused with 409, bad input with 400 and the zod issues, and nothing changes', async () => {
  const { job: running } = await first().submitJob('rerun.holding', { tag: 'http' });
  for (let i = 0; i < 200 && (await first().getJob(running.jobId)).status !== 'PROCESSING'; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  const path = (jobId: string, stage: string) => ({ params: { jobId, stage } });
  const refused = await call(rerunTasksHandler, 'POST', `jobs/${running.jobId}/stages/1/rerun`, {
    ...path(running.jobId, '1'),
    body: '{"status":"COMPLETED"}',
  });
  expect(refused.status).toBe(409);
  expect(ErrorReply.parse(refused.body).error).toMatchObject({
    type: 'InvalidTransitionError',
    message: expect.stringMatching(/PROCESSING → QUEUED/) as unknown,
  });

  const { job } = await first().submitJob('rerun.report', { n: 4 });
  expect((await waitForJob(first(), job.jobId, 30_000)).status).toBe('COMPLETED');
  const before = await rowCounts(db.pool);
  const otherJobsTask = (await tasksOf(running.jobId, 1))[0]?.task_id ?? '';
  const cases: Array<[string, string, RegExp]> = [
    ['1', '{}', /choose the tasks to re-run/],
    ['1', '{"status":"RUNNING"}', /status/],
    ['1', '{"taskIds":["nope"]}', /taskIds\.0: a task id is/],
    ['1', '{"taskIds":[]}', /at least one task/],
    ['1', '{"resultField":{"path":"a..b","equals":1}}', /resultField\.path/],
    ['1', '{"resultField":{"path":"ok"}}', /equals is required/],
    ['1', '{"status":"FAILED","dryRun":"yes"}', /dryRun/],
    ['1', '{"status":"FAILED","stage":2}', /stage/],
    ['1', '[1,2]', /expected object/],
    ['0', '{"status":"FAILED"}', /stage: expected at least 1/],
    ['x', '{"status":"FAILED"}', /stage/],
    ['1', `{"taskIds":["${otherJobsTask}"]}`, /taskIds\.0: .* is not a task of stage 1 of this job/],
  ];
  for (const [stage, body, issue] of cases) {
    const reply = await call(rerunTasksHandler, 'POST', `jobs/${job.jobId}/stages/${stage}/rerun`, { ...path(job.jobId, stage), body });
    const { error } = ErrorReply.parse(reply.body);
    const issues = (error.issues as Array<{ path: unknown[]; message: string }> | undefined)?.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    expect({ body, stage, status: reply.status, type: error.type }).toEqual({ body, stage, status: 400, type: 'ValidationError' });
    expect(`${body} → ${issues ?? ''}`).toMatch(issue);
  }
  // A stage the job type does not have, and an unknown job.
  const beyond = await call(rerunTasksHandler, 'POST', `jobs/${job.jobId}/stages/3/rerun`, { ...path(job.jobId, '3'), body: '{"status":"COMPLETED"}' });
  expect([beyond.status, ErrorReply.parse(beyond.body).error.type]).toEqual([409, 'RerunRefusedError']);
  const unknown = await call(rerunTasksHandler, 'POST', `jobs/${'0'.repeat(64)}/stages/1/rerun`, {
    ...path('0'.repeat(64), '1'),
    body: '{"status":"COMPLETED"}',
  });
  expect(unknown.status).toBe(404);
  expect(await rowCounts(db.pool)).toEqual(before);

  // The same route answers a dry run and a re-run with the outcome.
  const dry = await call(rerunTasksHandler, 'POST', `jobs/${job.jobId}/stages/2/rerun`, {
    ...path(job.jobId, '2'),
    body: '{"status":"COMPLETED","dryRun":true}',
  });
  expect(dry).toMatchObject({ status: 200, body: { dryRun: true, selected: 4, recomputedStages: [] } });
  const done = await call(rerunTasksHandler, 'POST', `jobs/${job.jobId}/stages/2/rerun`, { ...path(job.jobId, '2'), body: '{"status":"COMPLETED"}' });
  expect(done.status).toBe(200);
  expect((done.body as RerunOutcome).reruns).toBe(1);
  expect((await waitForJob(first(), job.jobId, 30_000)).status).toBe('COMPLETED');

  // From code, the same checks: a value jsonb cannot hold is refused before any SQL.
  await expect(first().rerunTasks(job.jobId, { stage: 1, resultField: { path: 'i', equals: 'a\u0000b' } })).rejects.toBeInstanceOf(ValidationError);
  await expect(first().rerunTasks('not-a-job', { stage: 1, status: 'FAILED' })).rejects.toBeInstanceOf(ValidationError);

  await first().cancelJob(running.jobId);
  await expect(first().rerunTasks(running.jobId, { stage: 1, status: 'COMPLETED' })).rejects.toThrow(/a CANCELLED job is final/);
});

// Values over 1 KiB go to a payload store (a folder here, Blob Storage in Azure).
const versions = new Map<number, string>();
const bulky = defineTask({
  type: 'rerun.bulky',
  parameters: z.object({ i: z.number().int() }),
  handler: ({ i }) => ({ i, text: `${versions.get(i) ?? 'v1'}:`.padEnd(2000, 'x') }),
});
const digest = defineTask({
  type: 'rerun.digest',
  parameters: z.object({ heads: z.array(z.string()) }),
  handler: ({ heads }) => ({ heads: heads.join(',').padEnd(2000, 'y') }),
});
const blobs = defineJob({ type: 'rerun.blobs', parameters: z.object({ n: z.number().int() }) })
  .stage({ name: 'bulky', task: bulky, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
  .stage({ name: 'digest', task: digest, fanOut: async ({ previous }) => [{ heads: (await previous.all()).map((r) => r.text.slice(0, 3)) }] })
  .finalize(async ({ previous }) => ({ digest: (await previous.all())[0]?.heads ?? '' }));

test('values in the payload store: the blobs a re-run replaced are deleted, one written again with the same value is kept', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coremachine-rerun-blobs-'));
  const store = new LocalPayloadStore(dir);
  const own = new InProcessTransport({ duplicateDetectionWindowMs: 10 * 60_000 });
  const logger = captureLogger([]);
  const payloads = new Payloads(store, { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: 1024 });
  const machine = await CoreMachine.create({ pool: db.pool, registry: new Registry().register(blobs), transport: own, logger, payloads });
  const worker = new InProcessWorker(machine, own, logger, { taskBatchSize: 4, taskConcurrency: 2, jobConcurrency: 1 });
  const stored = async () => new Set((await store.list({ maxResults: 1000 })).items.map((item) => item.key));
  const referenced = async () =>
    new Set(
      (
        await db.pool.query<{ key: string }>(
          `SELECT result_ref->>'key' AS key FROM coremachine.jobs WHERE result_ref IS NOT NULL
           UNION SELECT r.ref->>'key' FROM coremachine.tasks t, LATERAL (VALUES (t.result_ref), (t.parameters_ref)) r(ref) WHERE r.ref IS NOT NULL`,
        )
      ).rows.map((row) => row.key),
    );
  try {
    const { job } = await machine.submitJob('rerun.blobs', { n: 3 });
    expect(await waitForJob(machine, job.jobId)).toMatchObject({ status: 'COMPLETED', resultRef: expect.any(Object) as unknown });
    const before = await stored();
    // Three task results, the digest task's result and the job's: every one in the store and referenced.
    expect(before.size).toBe(5);
    expect(await referenced()).toEqual(before);

    // Task 0 returns a new value, task 1 the same one again (the same blob name: content-addressed).
    versions.set(0, 'v2');
    const ids = (await tasksOf(job.jobId, 1)).slice(0, 2).map((task) => task.task_id);
    await machine.rerunTasks(job.jobId, { stage: 1, taskIds: ids });
    const done = await waitForJob(machine, job.jobId);
    expect(done.status).toBe('COMPLETED');
    const value = await machine.values.open({ jobId: job.jobId, field: 'result' });
    if (value.kind !== 'stored') throw new Error('the job result should be in the payload store');
    const chunks: Buffer[] = [];
    for await (const chunk of value.stream) chunks.push(chunk as Buffer);
    expect(JSON.parse(Buffer.concat(chunks).toString('utf8'))).toMatchObject({ digest: expect.stringMatching(/^v2:,v1:,v1:/) as unknown });
    const after = await stored();
    // No blob left that no row references, and none missing that a row does.
    expect(after).toEqual(await referenced());
    expect(after.size).toBe(5);
    // The three values that changed (task 0's result, the digest, the job's result) are new blobs; the other two are the same.
    expect([...after].filter((key) => before.has(key))).toHaveLength(2);
  } finally {
    await worker.stop();
    await own.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
