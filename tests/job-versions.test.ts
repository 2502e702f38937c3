import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { DuplicateRegistrationError, UnknownJobVersionError, ValidationError } from '../core/errors';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineTask, type AnyJobDefinition } from '../models';
import { setAppContext } from '../functions/app-context';
import { healthDetailsHandler, healthHandler } from '../functions/http-health';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { call, invocationLogs } from './support/http-invoke';
import { runCliCaptured } from './support/cli-run';

const db = useTestDatabase();

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** What each task ran as: the proof of which definition a job went through. */
const ran: string[] = [];
let holdStage2: { reached: () => void; release: Promise<void> } | undefined;

// v1: {n} → stage "square" (n tasks) → stage "sum" (2 tasks) → finalize {version: 1, total}.
const square = defineTask({
  type: 'versions.square_v1',
  parameters: z.object({ i: z.number().int() }),
  handler: ({ i }) => (ran.push(`square_v1:${i}`), { value: i * i }),
});
const sumHalf = defineTask({
  type: 'versions.sum_v1',
  parameters: z.object({ half: z.number().int(), values: z.array(z.number()) }),
  handler: async ({ half, values }) => {
    ran.push(`sum_v1:${half}`);
    if (holdStage2) {
      holdStage2.reached();
      await holdStage2.release;
    }
    return { sum: values.reduce((a, b) => a + b, 0) };
  },
});
const v1 = defineJob({ type: 'versions.report', parameters: z.object({ n: z.number().int().min(2) }) })
  .stage({ name: 'square', task: square, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
  .stage({
    name: 'sum',
    task: sumHalf,
    fanOut: async ({ previous }) => {
      const values = (await previous.all()).map((r) => r.value);
      const middle = Math.ceil(values.length / 2);
      return [
        { half: 0, values: values.slice(0, middle) },
        { half: 1, values: values.slice(middle) },
      ];
    },
  })
  .finalize(async ({ previous }) => ({ version: 1, total: (await previous.all()).reduce((a, r) => a + r.sum, 0) }));

// v2: another parameter schema, three stages, other task types, another result shape.
const upper = defineTask({
  type: 'versions.upper_v2',
  parameters: z.object({ word: z.string() }),
  handler: ({ word }) => (ran.push(`upper_v2:${word}`), { word: word.toUpperCase() }),
});
const v2 = defineJob({ type: 'versions.report', version: 2, parameters: z.object({ words: z.array(z.string()).min(1) }) })
  .stage({ name: 'upper', task: upper, fanOut: ({ parameters }) => parameters.words.map((word) => ({ word })) })
  .stage({ name: 'again', task: upper, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ word: `${r.word}!` })) })
  .stage({ name: 'once more', task: upper, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ word: r.word })) })
  .finalize(async ({ previous }) => ({ version: 2, words: (await previous.all()).map((r) => r.word).sort() }));

/** One deployment of the app: its own engine and worker, sharing the database and the queues (Service Bus outlives a deploy). */
async function deploy(transport: InProcessTransport, ...jobs: AnyJobDefinition[]) {
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const machine = await CoreMachine.create({ pool: db.pool, registry: new Registry().register(...jobs), transport, logger });
  const worker = new InProcessWorker(machine, transport, logger, { taskBatchSize: 1, taskConcurrency: 1, jobConcurrency: 1 });
  return { machine, worker, logs, logger };
}

beforeEach(() => {
  ran.length = 0;
  holdStage2 = undefined;
});

test('a v1 job paused at stage 2 survives a deploy of v2 with other stages and schemas: resumed, it completes under v1 while new submissions run v2', async () => {
  const transport = new InProcessTransport();
  const held = gate();
  const release = gate();
  holdStage2 = { reached: held.open, release: release.opened };

  const first = await deploy(transport, v1);
  const { job } = await first.machine.submitJob('versions.report', { n: 4 });
  expect(job.version).toBe(1);
  await held.opened; // the first of stage 2's two tasks is running (concurrency 1: the second waits)
  expect((await first.machine.pauseJob(job.jobId)).status).toBe('PAUSED');
  release.open();
  await first.worker.stop();
  holdStage2 = undefined;
  const paused = await first.machine.getJob(job.jobId);
  expect(paused).toMatchObject({ status: 'PAUSED', stage: 2, version: 1 });
  expect(paused.stages[1]).toMatchObject({ completed: 1, total: 2 });

  // The deploy: both versions registered; v2 is the newest.
  const second = await deploy(transport, v1, v2);
  const fresh = await second.machine.submitJob('versions.report', { words: ['a', 'b'] });
  expect(fresh.job).toMatchObject({ version: 2, totalStages: 3 });
  // The newest version's schema applies unless the submitter names a version.
  await expect(second.machine.submitJob('versions.report', { n: 3 })).rejects.toBeInstanceOf(ValidationError);
  const named = await second.machine.submitJob('versions.report', { n: 2 }, { version: '1' });
  expect(named.job).toMatchObject({ version: 1, totalStages: 2 });
  await expect(second.machine.submitJob('versions.report', { n: 2 }, { version: 3 })).rejects.toBeInstanceOf(UnknownJobVersionError);

  expect((await second.machine.resumeJob(job.jobId)).status).toBe('QUEUED');
  const resumed = await waitForJob(second.machine, job.jobId);
  expect(resumed).toMatchObject({ status: 'COMPLETED', version: 1, totalStages: 2, result: { version: 1, total: 0 + 1 + 4 + 9 } });
  expect(resumed.stages.map((s) => s.name)).toEqual(['square', 'sum']);
  expect((await waitForJob(second.machine, fresh.job.jobId)).result).toEqual({ version: 2, words: ['A!', 'B!'] });
  expect((await waitForJob(second.machine, named.job.jobId)).result).toEqual({ version: 1, total: 1 });
  // The paused job's two stage-2 tasks ran once each (the held one before the deploy, the other after), as did the named v1 job's.
  expect(ran.filter((r) => r.startsWith('sum_v1')).sort()).toEqual(['sum_v1:0', 'sum_v1:0', 'sum_v1:1', 'sum_v1:1']);
  const tasks = await second.machine.listTasks(job.jobId);
  expect(new Set(tasks.map((t) => t.taskType))).toEqual(new Set(['versions.square_v1', 'versions.sum_v1']));
  await second.worker.stop();
  await transport.close();
});

test('a deploy that drops a version in use: its jobs wait, visibly, without failing or running v2, and finish once it is back', async () => {
  const transport = new InProcessTransport();
  const old = await deploy(transport, v1);
  await old.worker.stop(); // nothing consumes: the job's messages stay in the queues across the deploy
  const { job } = await old.machine.submitJob('versions.report', { n: 3 });
  await old.machine.outbox.sweep(0);

  const dropped = await deploy(transport, v2);
  await dropped.worker.drain();
  const waiting = await dropped.machine.getJob(job.jobId);
  expect(waiting.status).toBe('QUEUED');
  expect(waiting.waitingFor).toMatch(/waiting for version 1 of job type "versions\.report".*registered: v2/);
  expect(dropped.logs.join('\n')).toMatch(/job message waits: the job's version is not deployed/);
  expect(await dropped.machine.missingVersions()).toEqual([{ jobType: 'versions.report', version: 1, activeJobs: 1, failedJobs: 0, registered: false }]);
  expect((await dropped.machine.jobTypes()).versionsInUse).toEqual([
    { jobType: 'versions.report', version: 1, activeJobs: 1, failedJobs: 0, registered: false },
  ]);
  // The janitor says why and sends nothing: a resend would only wait again.
  const report = await dropped.machine.sweep({ stallAfterMs: 0 });
  expect(report.stalled).toEqual([
    expect.objectContaining({ jobId: job.jobId, action: 'none', reason: expect.stringMatching(/waiting for version 1/) as unknown }),
  ]);
  expect(ran).toEqual([]);
  // The keyed health route names it; the app itself stays healthy (it can serve everything else).
  setAppContext({ machine: dropped.machine, pool: db.pool, transport, logger: dropped.logger });
  try {
    const health = await call(healthDetailsHandler, 'GET', 'health/details');
    expect(health).toMatchObject({ status: 200, body: { status: 'healthy', missingVersions: [{ jobType: 'versions.report', version: 1, activeJobs: 1 }] } });
    expect(invocationLogs.some((line) => line.includes('coremachine.health.missing_versions'))).toBe(true);
    expect((await call(healthHandler, 'GET', 'health')).body).not.toHaveProperty('missingVersions');
  } finally {
    setAppContext(undefined);
  }
  // The predeploy check refuses a registration without v1 and passes one with it.
  const preflight = (...jobs: AnyJobDefinition[]) =>
    runCliCaptured(['db', 'versions'], { isTTY: false, env: { DATABASE_URL: db.url, LOG_LEVEL: 'silent' } }, { registry: new Registry().register(...jobs) });
  const refused = await preflight(v2);
  expect(refused.code).toBe(1);
  expect(refused.stdout).toMatch(/^versions\.report\s+v1\s+1\s+0\s+NO$/m);
  expect(refused.stderr).toContain('this registration drops versions.report v1 (1 active job(s))');
  const passed = await preflight(v1, v2);
  expect([passed.code, passed.stdout]).toEqual([0, expect.stringContaining('every version an active job runs is registered')]);
  await dropped.worker.stop();

  // v1 is back for stage 1, then dropped again while stage 1's task messages are in the queue.
  const back = await deploy(transport, v1, v2);
  await back.worker.stop();
  await back.machine.sweep({ stallAfterMs: 0 });
  const jobMessage = transport.jobs.receive(1);
  expect(await back.machine.processJobMessage(jobMessage[0]?.body)).toMatchObject({ kind: 'started' });
  await back.machine.outbox.sweep(0);
  const taskMessages = transport.tasks.receive(10);
  expect(taskMessages).toHaveLength(3);

  const droppedAgain = await deploy(transport, v2);
  await droppedAgain.worker.stop();
  const outcomes = await droppedAgain.machine.processTaskMessages(taskMessages.map((m) => m.body));
  expect(outcomes.map((o) => o.kind)).toEqual(['waiting', 'waiting', 'waiting']);
  const tasks = await droppedAgain.machine.listTasks(job.jobId);
  expect(tasks.map((t) => [t.status, t.attempt])).toEqual([
    ['QUEUED', 0],
    ['QUEUED', 0],
    ['QUEUED', 0],
  ]);
  expect((await droppedAgain.machine.getJob(job.jobId)).waitingFor).toMatch(/version 1/);
  for (const message of jobMessage) transport.jobs.complete(message);
  for (const message of taskMessages) transport.tasks.complete(message);

  // Deployed again: the janitor resends what waited, and the job completes under v1.
  const final = await deploy(transport, v1, v2);
  await final.machine.sweep({ stallAfterMs: 0 });
  const done = await waitForJob(final.machine, job.jobId);
  expect(done).toMatchObject({ status: 'COMPLETED', version: 1, result: { version: 1, total: 0 + 1 + 4 } });
  expect(done.waitingFor).toBeUndefined();
  expect(await final.machine.missingVersions()).toEqual([]);
  expect(ran.filter((r) => r.startsWith('square_v1')).sort()).toEqual(['square_v1:0', 'square_v1:1', 'square_v1:2']);
  await final.worker.stop();
  await transport.close();
});

test('registration: versions of a type live side by side, a version twice is refused, a task type is shared between versions', () => {
  const registry = new Registry().register(v2, v1);
  expect(registry.versionsOf('versions.report')).toEqual([1, 2]);
  expect(registry.job('versions.report').version).toBe(2);
  expect(registry.job('versions.report', 1)).toBe(v1);
  expect(() => registry.job('versions.report', 5)).toThrow(UnknownJobVersionError);
  const imposter = defineJob({ type: 'versions.report', version: 2, parameters: z.object({}) })
    .stage({ name: 'x', task: upper, fanOut: () => [] })
    .finalize(() => null);
  expect(() => new Registry().register(v2, imposter)).toThrow(DuplicateRegistrationError);
  expect(() => defineJob({ type: 'versions.bad', version: 0, parameters: z.object({}) })).toThrow(/version/);
  expect(() => defineJob({ type: 'versions.bad', version: 1.5, parameters: z.object({}) })).toThrow(/version/);
});
