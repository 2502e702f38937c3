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
