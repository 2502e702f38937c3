import type pg from 'pg';
import { CoreMachine } from '../core/engine/core-machine';
import { InvalidTransitionError } from '../core/errors';
import { InProcessTransport } from '../core/transport/in-process-transport';
import type { Transport } from '../core/transport/transport';
import type { JobQueueMessage } from '../models';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { captureLogger, startHarness, stuckJobs, waitForJob } from './support/harness';
import { receiveTaskBodies } from './support/task-messages';
import { findJob, transitionJob } from '../core/state/jobs-store';
import { InProcessWorker } from '../core/worker';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase({ poolMax: 4 });
});
afterAll(async () => {
  await db.drop();
});
afterEach(async () => {
  expect(await stuckJobs(db.pool)).toEqual([]);
});

test('200 tasks of one stage completing concurrently over 20 connections: exactly one advance, exact counters', async () => {
  const n = 200;
  let release!: () => void;
  const barrier = new Promise<void>((resolve) => (release = resolve));
  let started = 0;
  const h = await startHarness(db.pool, {
    worker: false,
    beforeTask: async (_taskId, _index) => {
      started++;
      if (started === n) release();
      await barrier;
    },
  });
  const jobSends: JobQueueMessage[] = [];
  const spy = h.transport.sendJobMessages.bind(h.transport);
  h.transport.sendJobMessages = (messages) => {
    jobSends.push(...messages);
    return spy(messages);
  };

  const { job } = await h.machine.submitJob('test.three_stages', { n, tag: 'concurrency' });
  const [jobMessage] = h.transport.jobs.receive(1);
  await h.machine.processJobMessage(jobMessage?.body);
  // One body per task (packs unpacked as the host does), each committed on its own below.
  const taskMessages = receiveTaskBodies(h.transport.tasks, n).bodies.map((body) => ({ body }));
  expect(taskMessages).toHaveLength(n);

  // Twenty engines, each with its own single-connection pool: twenty separate backends.
  const pools: pg.Pool[] = Array.from({ length: 20 }, () => db.newPool(1));
  const machines = await Promise.all(
    pools.map((pool) => CoreMachine.create({ pool, registry: h.registry, transport: h.transport, logger: captureLogger([]) })),
  );
  const backends: Array<number | undefined> = await Promise.all(
    pools.map(async (pool) => (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid),
  );
  expect(new Set(backends).size).toBeGreaterThanOrEqual(10);

  const outcomes = await Promise.all(
    taskMessages.map((message, i) => {
      const machine = machines[i % machines.length];
      if (!machine) throw new Error('no machine');
      return machine.processTaskMessages([message.body]);
    }),
  );
  expect(outcomes.flat().every((o) => o.kind === 'completed')).toBe(true);

  const view = await h.machine.getJob(job.jobId);
  expect(view.stages[0]).toMatchObject({ total: n, completed: n, failed: 0, status: 'COMPLETED' });
  expect(jobSends.filter((m) => m.stage === 2)).toHaveLength(1);
  expect(view.status).toBe('QUEUED');
  expect(view.stage).toBe(2);
  expect(h.effects.total).toBe(n);

  // The rest of the job runs to the exact result on a worker over the same queues.
  const worker = new InProcessWorker(h.machine, h.transport, captureLogger([]), { taskBatchSize: 50, taskConcurrency: 4, jobConcurrency: 1 });
  release();
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: n, sum: n * n });
  await worker.stop();
  await h.stop();
});

test('the advance commits QUEUED before the next stage message is sent', async () => {
  const observer = db.newPool(1);
  const seenAtSend: Array<{ stage: number; status: string | undefined; committedStage: number | undefined }> = [];
  const h = await startHarness(db.pool, {
    wrapTransport: (inner: InProcessTransport): Transport => ({
      name: 'observing',
      durable: false,
      sendReceipt: (queue, receipt, properties) => inner.sendReceipt(queue, receipt, properties),
      publishEvents: (events) => inner.publishEvents(events),
      sendTaskMessages: (m) => inner.sendTaskMessages(m),
      scheduleTaskMessages: (m, at) => inner.scheduleTaskMessages(m, at),
      close: () => inner.close(),
      sendJobMessages: async (messages) => {
        for (const message of messages) {
          // A separate connection sees only committed state.
          const row = await findJob(observer, message.jobId);
          seenAtSend.push({ stage: message.stage, status: row?.status, committedStage: row?.stage });
        }
        await inner.sendJobMessages(messages);
      },
    }),
  });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 10, tag: 'ordering' });
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('COMPLETED');
  expect(seenAtSend).toEqual([
    { stage: 1, status: 'QUEUED', committedStage: 1 },
    { stage: 2, status: 'QUEUED', committedStage: 2 },
    { stage: 3, status: 'QUEUED', committedStage: 3 },
  ]);
  await h.stop();
});

test('a second PROCESSING for the same stage raises InvalidTransitionError and the message is not acknowledged', async () => {
  const h = await startHarness(db.pool, { worker: false, queue: { maxDeliveryCount: 3 } });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 3, tag: 'double-processing' });
  const [first] = h.transport.jobs.receive(1);
  await h.machine.processJobMessage(first?.body);

  // The transition table itself refuses PROCESSING → PROCESSING before any SQL runs.
  await expect(transitionJob(db.pool, job.jobId, 'PROCESSING', 'PROCESSING')).rejects.toBeInstanceOf(InvalidTransitionError);

  // The shipped bug: an advance that left the job PROCESSING at the next stage without starting
  // it. The next stage message must raise, not be logged and swallowed.
  await db.pool.query('UPDATE coremachine.jobs SET stage = 2 WHERE job_id = $1', [job.jobId]);
  const message: JobQueueMessage = { jobId: job.jobId, jobType: 'test.three_stages', stage: 2 };
  const error = await h.machine.processJobMessage(message).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(InvalidTransitionError);
  expect(error).toMatchObject({ entity: 'job', from: 'PROCESSING', to: 'PROCESSING', id: job.jobId });

  // Through the worker the message is abandoned and redelivered until it is dead-lettered: visible.
  await h.transport.sendJobMessages([message]);
  const worker = new InProcessWorker(h.machine, h.transport, captureLogger(h.logs), { taskBatchSize: 8, taskConcurrency: 1, jobConcurrency: 1 });
  await worker.drain();
  expect(h.transport.jobs.deadLetters).toHaveLength(1);
  expect(h.transport.jobs.deadLetters[0]).toMatchObject({ deadLetterReason: 'MaxDeliveryCountExceeded', deliveryCount: 3 });
  // Two deliveries abandoned with the error; the last one is dead-lettered carrying it (core/settlement.ts).
  expect(h.logs.filter((l) => l.includes('message abandoned for redelivery') && l.includes('InvalidTransitionError')).length).toBe(2);
  expect(h.transport.jobs.deadLetters[0]?.deadLetterErrorDescription).toMatch(
    /^failed on delivery 3 of 3: InvalidTransitionError: invalid job transition PROCESSING → PROCESSING/,
  );
  // ...and the dead-letter consumer then fails the job with the reason: it is not left PROCESSING.
  const failed = await h.machine.getJob(job.jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({ type: 'DeadLetteredError', stage: 2 });
  await worker.stop();
  await h.stop();
});
