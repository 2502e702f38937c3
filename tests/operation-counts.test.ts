/**
 * The cloud's units counted by both transports (core/transport/operation-counts.ts): a known job
 * shape on the in-process transport costs exactly the Service Bus operations and Functions
 * executions derived by hand, and the Service Bus sender counts every message it hands over.
 */
import type { ServiceBusMessage, ServiceBusMessageBatch } from '@azure/service-bus';
import Long from 'long';
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { countsBetween, OperationCounts, type OperationCountsSnapshot } from '../core/transport/operation-counts';
import { ServiceBusTransport, type ServiceBusClientLike, type ServiceBusSenderLike } from '../core/transport/service-bus-transport';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineTask, type JobEvent, type TaskQueueMessage } from '../models';
import { waitForJob } from './support/harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

const noop = defineTask({ type: 'counts.noop', parameters: z.object({ i: z.number().int() }), handler: ({ i }) => Promise.resolve({ i }) });
const byCount = (n: number) => Array.from({ length: n }, (_, i) => ({ i }));
const oneStage = defineJob({ type: 'counts.one_stage', parameters: z.object({ n: z.number().int().min(1), run: z.string() }) })
  .stage({ name: 'only', task: noop, fanOut: ({ parameters }) => byCount(parameters.n) })
  .finalize(({ previous }) => previous.count);
const threeStages = defineJob({ type: 'counts.three_stages', parameters: z.object({ n: z.number().int().min(1), run: z.string() }) })
  .stage({ name: 'one', task: noop, fanOut: ({ parameters }) => byCount(parameters.n) })
  .stage({ name: 'two', task: noop, fanOut: ({ parameters }) => byCount(parameters.n) })
  .stage({ name: 'three', task: noop, fanOut: ({ parameters }) => byCount(parameters.n) })
  .finalize(({ previous }) => previous.count);

const ZERO: OperationCountsSnapshot = {
  send: 0,
  receive: 0,
  complete: 0,
  abandon: 0,
  renew: 0,
  schedule: 0,
  deadLetter: 0,
  total: 0,
  executions: 0,
  sentBytes: 0,
  receivedBytes: 0,
};

test('a counter adds by kind, totals the seven Service Bus operations apart from executions, and subtracts snapshots', () => {
  const counts = new OperationCounts();
  const before = counts.snapshot();
  expect(before).toEqual(ZERO);
  counts.add('send', 3);
  counts.add('receive', 3);
  counts.add('complete', 2);
  counts.add('abandon');
  counts.add('execution', 2);
  counts.addBytes('sent', 300);
  expect(countsBetween(before, counts.snapshot())).toEqual({ ...ZERO, send: 3, receive: 3, complete: 2, abandon: 1, total: 9, executions: 2, sentBytes: 300 });
  expect(() => counts.add('send', -1)).toThrow(RangeError);
  expect(() => counts.add('send', 1.5)).toThrow(RangeError);
});

describe('in process', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  async function engine(options: { taskBatchSize: number; taskConcurrency: number }) {
    const transport = new InProcessTransport();
    const logger = createLogger('silent');
    const registry = new Registry().register(oneStage, threeStages);
    const machine = await CoreMachine.create({ pool: db.pool, registry, transport, logger });
    const worker = new InProcessWorker(machine, transport, logger, { ...options, jobConcurrency: 1 });
    return {
      transport,
      machine,
      worker,
      stop: async () => {
        await worker.stop();
        await transport.close();
      },
    };
  }

  test('a 1-stage job of 5 tasks in batches of 1 costs exactly the operations derived by hand', async () => {
    const e = await engine({ taskBatchSize: 1, taskConcurrency: 1 });
    try {
      const before = e.transport.operations().snapshot();
      const { job } = await e.machine.submitJob('counts.one_stage', { n: 5, run: 'exact' });
      expect((await waitForJob(e.machine, job.jobId)).status).toBe('COMPLETED');
      await e.worker.drain();
      const counts = countsBetween(before, e.transport.operations().snapshot());
      // Sends: the job message, the stage's 5 task messages (5 tasks are too few to pack), and two
      // events to the topic (StageCompleted, JobCompleted). Receives, completes and executions: the
      // job message and each task message, one message per batch.
      expect(counts).toMatchObject({ send: 1 + 5 + 2, receive: 1 + 5, complete: 1 + 5, abandon: 0, renew: 0, schedule: 0, deadLetter: 0, executions: 1 + 5 });
      expect(counts.total).toBe(8 + 6 + 6);
      // Bytes: every queue message sent was received once (events' bytes are counted only by the Service Bus sender).
      expect(counts.receivedBytes).toBeGreaterThan(0);
      expect(counts.sentBytes).toBe(counts.receivedBytes);
    } finally {
      await e.stop();
    }
  });

  test('on a larger job the counts agree with what the queues themselves saw, and a batch is one execution', async () => {
    const e = await engine({ taskBatchSize: 16, taskConcurrency: 4 });
    try {
      const before = e.transport.operations().snapshot();
      const { job } = await e.machine.submitJob('counts.three_stages', { n: 300, run: 'consistent' });
      expect((await waitForJob(e.machine, job.jobId, 60_000)).status).toBe('COMPLETED');
      await e.worker.drain();
      const counts = countsBetween(before, e.transport.operations().snapshot());
      const queues = [e.transport.jobs, e.transport.tasks];
      const sum = (pick: (stats: (typeof queues)[number]['stats']) => number) => queues.reduce((total, queue) => total + pick(queue.stats), 0);
      // Three stage events and the job's: sent to the topic, not to either queue.
      const events = 4;
      expect(counts.send + counts.schedule - events).toBe(sum((s) => s.sent + s.duplicatesDropped));
      expect(counts.receive).toBe(sum((s) => s.delivered));
      expect(counts.complete).toBe(sum((s) => s.completed));
      expect(counts.abandon).toBe(sum((s) => s.abandoned));
      // Job messages one at a time; task batches of up to 16 messages.
      expect(counts.executions).toBeLessThan(counts.receive);
      expect(counts.executions).toBeGreaterThanOrEqual(3 + Math.ceil(e.transport.tasks.stats.delivered / 16));
    } finally {
      await e.stop();
    }
  });
});

/** Just enough of the SDK for the transport: batches know their count and size, as the SDK's do. */
class FakeSender implements ServiceBusSenderLike {
  failNext = false;
  createMessageBatch(): Promise<ServiceBusMessageBatch> {
    const messages: ServiceBusMessage[] = [];
    const batch = {
      maxSizeInBytes: 256 * 1024,
      sizeInBytes: 0,
      get count() {
        return messages.length;
      },
      tryAddMessage(message: ServiceBusMessage) {
        messages.push(message);
        batch.sizeInBytes += JSON.stringify(message).length;
        return true;
      },
    };
    return Promise.resolve(batch as unknown as ServiceBusMessageBatch);
  }
  sendMessages(): Promise<void> {
    if (!this.failNext) return Promise.resolve();
    this.failNext = false;
    return Promise.reject(new Error('the link was detached'));
  }
  scheduleMessages(messages: ServiceBusMessage | ServiceBusMessage[]): Promise<Long[]> {
    return Promise.resolve((Array.isArray(messages) ? messages : [messages]).map((_, i) => Long.fromNumber(i)));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

test('the Service Bus sender counts each message a send or a schedule carried, once the broker took it', async () => {
  const senders = new Map<string, FakeSender>();
  const client: ServiceBusClientLike = {
    createSender: (queue) => {
      const sender = new FakeSender();
      senders.set(queue, sender);
      return sender;
    },
    close: () => Promise.resolve(),
  };
  const transport = new ServiceBusTransport(client);
  const tasks: TaskQueueMessage[] = byCount(3).map(({ i }) => ({ taskId: `t${i}`, jobId: 'j', stage: 1, taskType: 'counts.noop', attempt: 1 }));
  await transport.sendJobMessages([{ jobId: 'j', jobType: 'counts.one_stage', stage: 1 }]);
  await transport.sendTaskMessages(tasks);
  await transport.scheduleTaskMessages(tasks.slice(0, 2), new Date(Date.now() + 60_000));
  await transport.reschedule('coremachine-jobs', { messageId: 'j:s1~r1', body: { jobId: 'j' }, applicationProperties: {} }, new Date());
  const event = { jobId: 'j', jobType: 'counts.one_stage', type: 'JobCompleted', status: 'COMPLETED', stage: 1, at: new Date().toISOString() } as JobEvent;
  await transport.publishEvents([event]);
  // A send the broker refused is no operation spent; the caller sends again.
  (senders.get('coremachine-tasks') as FakeSender).failNext = true;
  await expect(transport.sendTaskMessages(tasks.slice(0, 1))).rejects.toThrow('detached');
  const counts = transport.operations().snapshot();
  expect(counts).toMatchObject({ send: 1 + 3 + 1, schedule: 2 + 1, receive: 0, complete: 0, executions: 0, total: 8 });
  expect(counts.sentBytes).toBeGreaterThan(0);
  await transport.close();
});
