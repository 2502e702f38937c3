/**
 * Opt-in round trip through a real Service Bus namespace (or the local emulator):
 *   SERVICEBUS_CONNECTION_STRING='Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;' \
 *     npx jest tests/servicebus-live.test.ts
 * The namespace needs the coremachine-jobs and coremachine-tasks queues (infra/main.bicep or
 * infra/servicebus-emulator/Config.json).
 */
import { randomUUID } from 'node:crypto';
import { ServiceBusClient, type ServiceBusReceivedMessage, type ServiceBusReceiver } from '@azure/service-bus';
import { ServiceBusTransport } from '../core/transport/service-bus-transport';
import { JOBS_QUEUE, TASKS_QUEUE } from '../core/transport/transport';
import { jobMessageId, taskMessageId, type JobQueueMessage, type TaskQueueMessage } from '../models';
import { mkdtempSync, copyFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreMachine } from '../core/engine/core-machine';
import { createLogger } from '../core/logger';
import { appRegistry } from './support/registry';
import { createTestDatabase, type TestDatabase } from './support/test-database';

const connectionString = process.env.SERVICEBUS_CONNECTION_STRING;
const live = connectionString ? describe : describe.skip;
if (!connectionString) console.log('servicebus-live: skipped: SERVICEBUS_CONNECTION_STRING not set');

/**
 * Receives until the wanted message shows up. Queues may be shared with other runs, so anything
 * else is abandoned (back to the queue for its owner) rather than completed.
 */
async function receiveById(receiver: ServiceBusReceiver, messageId: string, timeoutMs = 30_000): Promise<ServiceBusReceivedMessage> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const received = await receiver.receiveMessages(10, { maxWaitTimeInMs: 2_000 });
    let found: ServiceBusReceivedMessage | undefined;
    for (const message of received) {
      if (!found && message.messageId === messageId) found = message;
      else await receiver.abandonMessage(message);
    }
    if (found) return found;
  }
  throw new Error(`message ${messageId} not received within ${timeoutMs} ms`);
}

live('Service Bus transport against a live namespace', () => {
  let client: ServiceBusClient;
  let transport: ServiceBusTransport;

  beforeAll(() => {
    client = new ServiceBusClient(connectionString ?? '');
    transport = ServiceBusTransport.fromConnectionString(connectionString ?? '');
  });

  afterAll(async () => {
    await transport.close();
    await client.close();
  });

  // Unique ids per run: duplicate detection would otherwise drop a re-run's messages.
  const jobId = `live-${randomUUID()}`;

  test('a job message round-trips with its body, messageId and properties', async () => {
    const message: JobQueueMessage = { jobId, jobType: 'live-test', stage: 1 };
    await transport.sendJobMessages([message]);

    const receiver = client.createReceiver(JOBS_QUEUE, { receiveMode: 'peekLock' });
    try {
      const received = await receiveById(receiver, jobMessageId(message));
      expect(received.body).toEqual(message);
      expect(received.contentType).toBe('application/json');
      expect(received.applicationProperties).toEqual({ jobId, stage: 1 });
      await receiver.completeMessage(received);
    } finally {
      await receiver.close();
    }
  }, 90_000);

  test('a task message round-trips with its body, messageId and properties', async () => {
    const message: TaskQueueMessage = { taskId: `${jobId}-s1-t0`, jobId, stage: 1, taskType: 'live-test', attempt: 1 };
    await transport.sendTaskMessages([message]);

    const receiver = client.createReceiver(TASKS_QUEUE, { receiveMode: 'peekLock' });
    try {
      const received = await receiveById(receiver, taskMessageId(message));
      expect(received.body).toEqual(message);
      expect(received.applicationProperties).toEqual({ jobId, stage: 1, taskId: message.taskId });
      await receiver.completeMessage(received);
    } finally {
      await receiver.close();
    }
  }, 90_000);
});

live('the demo job through a live namespace', () => {
  let db: TestDatabase;
  let client: ServiceBusClient;
  let transport: ServiceBusTransport;

  beforeAll(async () => {
    db = await createTestDatabase();
    client = new ServiceBusClient(connectionString ?? '');
    transport = ServiceBusTransport.fromConnectionString(connectionString ?? '');
  });
  afterAll(async () => {
    await transport.close();
    await client.close();
    await db.drop();
  });

  test('word_frequencies runs to COMPLETED with every message going through Service Bus', async () => {
    const machine = await CoreMachine.create({ pool: db.pool, registry: appRegistry(), transport, logger: createLogger('warn') });
    // A fresh folder makes a fresh job id, so duplicate detection cannot drop this run's messages.
    const source = path.join(__dirname, '..', 'jobs', 'data', 'word-frequencies');
    const directory = mkdtempSync(path.join(os.tmpdir(), 'cm-live-'));
    for (const file of readdirSync(source)) copyFileSync(path.join(source, file), path.join(directory, file));
    // The job reads only below its root: the temp folder is a folder below os.tmpdir().
    process.env.COREMACHINE_WORD_FREQUENCIES_ROOT = os.tmpdir();
    const { job } = await machine.submitJob('word_frequencies', { directory: path.basename(directory), topK: 3 });

    const jobs = client.createReceiver(JOBS_QUEUE, { receiveMode: 'peekLock' });
    const tasks = client.createReceiver(TASKS_QUEUE, { receiveMode: 'peekLock' });
    try {
      const deadline = Date.now() + 120_000;
      let status = job.status;
      while (['QUEUED', 'PROCESSING'].includes(status) && Date.now() < deadline) {
        // Plays the two triggers: settle our messages after the engine handled them; others go back.
        for (const message of await jobs.receiveMessages(5, { maxWaitTimeInMs: 1_000 })) {
          if (message.applicationProperties?.jobId !== job.jobId) await jobs.abandonMessage(message);
          else {
            await machine.processJobMessage(message.body, {
              messageId: String(message.messageId),
              traceparent: message.applicationProperties?.traceparent as string | undefined,
            });
            await jobs.completeMessage(message);
          }
        }
        const batch = await tasks.receiveMessages(32, { maxWaitTimeInMs: 1_000 });
        const ours = batch.filter((m) => m.applicationProperties?.jobId === job.jobId);
        for (const other of batch.filter((m) => !ours.includes(m))) await tasks.abandonMessage(other);
        if (ours.length > 0) {
          const outcomes = await machine.processTaskMessages(ours.map((m) => m.body as unknown));
          expect(outcomes.every((o) => o.kind === 'completed' || o.kind === 'duplicate')).toBe(true);
          for (const message of ours) await tasks.completeMessage(message);
        }
        status = (await machine.getJob(job.jobId)).status;
      }
      const done = await machine.getJob(job.jobId);
      expect(done.status).toBe('COMPLETED');
      expect(done.stages.map((stage) => [stage.total, stage.completed])).toEqual([
        [1, 1],
        [3, 3],
      ]);
      expect((done.result as { files: number }).files).toBe(3);
    } finally {
      await jobs.close();
      await tasks.close();
    }
  }, 180_000);
});
