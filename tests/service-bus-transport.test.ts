import type { ServiceBusMessage, ServiceBusMessageBatch, ServiceBusSender, TryAddOptions } from '@azure/service-bus';
import Long from 'long';
import {
  ServiceBusTransport,
  createServiceBusTransportFromEnv,
  type ServiceBusClientLike,
  type ServiceBusSenderLike,
} from '../core/transport/service-bus-transport';
import { EVENTS_TOPIC, JOBS_QUEUE, TASKS_QUEUE } from '../core/transport/transport';
import { packedMessageId } from '../core/transport/task-packing';
import type { JobEvent, JobQueueMessage, TaskQueueMessage } from '../models';

type SendArg = Parameters<ServiceBusSender['sendMessages']>[0];
type ScheduleArg = Parameters<ServiceBusSender['scheduleMessages']>[0];
type AddArg = Parameters<ServiceBusMessageBatch['tryAddMessage']>[0];

/** Size as the fake broker sees it: the JSON encoding of the message, as the SDK's body encoder would produce. */
const sizeOf = (message: AddArg): number => Buffer.byteLength(JSON.stringify(message), 'utf8');

/** Enforces its byte limit the way the SDK's batch does: tryAddMessage returns false instead of overflowing. */
class FakeBatch implements ServiceBusMessageBatch {
  readonly messages: ServiceBusMessage[] = [];
  sizeInBytes = 0;

  constructor(readonly maxSizeInBytes: number) {}

  get count(): number {
    return this.messages.length;
  }

  tryAddMessage(message: AddArg, _options?: TryAddOptions): boolean {
    const size = sizeOf(message);
    if (this.sizeInBytes + size > this.maxSizeInBytes) return false;
    this.sizeInBytes += size;
    this.messages.push(message);
    return true;
  }
}

class FakeSender implements ServiceBusSenderLike {
  readonly sent: FakeBatch[] = [];
  readonly scheduled: { messages: ServiceBusMessage[]; at: Date }[] = [];
  closed = 0;
  failNextSend: Error | undefined;
  private nextSequenceNumber = 1;

  /** `linkMaxSizeInBytes` plays the AMQP link's max message size that caps every batch. */
  constructor(
    readonly queueName: string,
    private readonly linkMaxSizeInBytes: number,
  ) {}

  createMessageBatch(options?: { maxSizeInBytes?: number }): Promise<ServiceBusMessageBatch> {
    this.assertOpen();
    const max = options?.maxSizeInBytes ?? this.linkMaxSizeInBytes;
    if (max > this.linkMaxSizeInBytes) return Promise.reject(new Error(`maxSizeInBytes ${max} exceeds the link's ${this.linkMaxSizeInBytes}`));
    return Promise.resolve(new FakeBatch(max));
  }

  sendMessages(messages: SendArg): Promise<void> {
    this.assertOpen();
    if (!(messages instanceof FakeBatch)) return Promise.reject(new Error('this fake expects batches'));
    if (messages.count === 0) return Promise.reject(new Error('empty batch sent'));
    if (this.failNextSend) {
      const error = this.failNextSend;
      this.failNextSend = undefined;
      return Promise.reject(error);
    }
    this.sent.push(messages);
    return Promise.resolve();
  }

  scheduleMessages(messages: ScheduleArg, scheduledEnqueueTimeUtc: Date): Promise<Long[]> {
    this.assertOpen();
    if (!(scheduledEnqueueTimeUtc instanceof Date)) return Promise.reject(new TypeError('scheduledEnqueueTimeUtc must be a Date'));
    const list = (Array.isArray(messages) ? messages : [messages]) as ServiceBusMessage[];
    this.scheduled.push({ messages: list, at: scheduledEnqueueTimeUtc });
    return Promise.resolve(list.map(() => Long.fromNumber(this.nextSequenceNumber++)));
  }

  close(): Promise<void> {
    this.closed += 1;
    return Promise.resolve();
  }

  private assertOpen(): void {
    if (this.closed > 0) throw new Error(`sender for ${this.queueName} is closed`);
  }
}

class FakeClient implements ServiceBusClientLike {
  readonly senders = new Map<string, FakeSender>();
  closed = 0;

  constructor(private readonly linkMaxSizeInBytes = 256 * 1024) {}

  createSender(queueName: string): FakeSender {
    if (this.senders.has(queueName)) throw new Error(`second sender for ${queueName}: senders should be reused`);
    const sender = new FakeSender(queueName, this.linkMaxSizeInBytes);
    this.senders.set(queueName, sender);
    return sender;
  }

  close(): Promise<void> {
    this.closed += 1;
    return Promise.resolve();
  }

  sender(queueName: string): FakeSender {
    const sender = this.senders.get(queueName);
    if (!sender) throw new Error(`no sender was created for ${queueName}`);
    return sender;
  }
}

const job = (stage = 1): JobQueueMessage => ({ jobId: 'a'.repeat(64), jobType: 'hello', stage });
const task = (index: number, attempt = 1): TaskQueueMessage => ({
  taskId: `${'a'.repeat(64)}-s2-t${index}`,
  jobId: 'a'.repeat(64),
  stage: 2,
  taskType: 'greet',
  attempt,
});

test('1,000 task messages go in packs of 16 (the most by default), each task exactly once, in order, under deterministic pack ids', async () => {
  const client = new FakeClient(8 * 1024);
  const transport = new ServiceBusTransport(client);
  const messages = Array.from({ length: 1000 }, (_, i) => task(i));
  await transport.sendTaskMessages(messages);
  const sent = client.sender(TASKS_QUEUE).sent.flatMap((batch) => batch.messages);
  expect(sent).toHaveLength(Math.ceil(1000 / 16));
  const bodies = sent.map((m) => m.body as TaskQueueMessage | { packed: TaskQueueMessage[] });
  expect(bodies.flatMap((body) => ('packed' in body ? body.packed : [body])).map((m) => `${m.taskId}:a${m.attempt}`)).toEqual(
    messages.map((m) => `${m.taskId}:a1`),
  );
  expect(sent[0]?.applicationProperties).toMatchObject({ jobId: messages[0]?.jobId, stage: 2, packed: 16 });
  expect(
    sent.every(
      (m) => (m.body as { packed?: unknown[] }).packed === undefined || m.messageId === packedMessageId((m.body as { packed: TaskQueueMessage[] }).packed),
    ),
  ).toBe(true);
  // Sent again (a janitor's re-dispatch without a resend tag), the same packs under the same ids: duplicate detection drops them.
  await transport.sendTaskMessages(messages);
  expect(
    client
      .sender(TASKS_QUEUE)
      .sent.flatMap((batch) => batch.messages.map((m) => m.messageId))
      .slice(sent.length),
  ).toEqual(sent.map((m) => m.messageId));
});

test('unpacked (maxPackedTasks 1), 1,000 task messages are split into full batches at the size limit, each sent exactly once, in order', async () => {
  const client = new FakeClient(8 * 1024);
  const transport = new ServiceBusTransport(client, { maxPackedTasks: 1 });
  const messages = Array.from({ length: 1000 }, (_, i) => task(i));

  await transport.sendTaskMessages(messages);

  const sender = client.sender(TASKS_QUEUE);
  expect(sender.sent.length).toBeGreaterThan(10);
  const sentIds = sender.sent.flatMap((batch) => batch.messages.map((m) => m.messageId));
  expect(sentIds).toEqual(messages.map((m) => `${m.taskId}:a1`));
  expect(new Set(sentIds).size).toBe(1000);
  for (const [i, batch] of sender.sent.entries()) {
    expect(batch.sizeInBytes).toBeLessThanOrEqual(8 * 1024);
    // Greedy packing: a batch was only closed because its successor's first message did not fit.
    const next = sender.sent[i + 1]?.messages[0];
    if (next) expect(batch.sizeInBytes + sizeOf(next)).toBeGreaterThan(batch.maxSizeInBytes);
  }
  expect(client.senders.has(JOBS_QUEUE)).toBe(false);
});

test('the maxBatchSizeInBytes option caps batches below the link limit', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client, { maxBatchSizeInBytes: 2048 });
  await transport.sendTaskMessages(Array.from({ length: 50 }, (_, i) => task(i)));
  const batches = client.sender(TASKS_QUEUE).sent;
  expect(batches.length).toBeGreaterThan(1);
  expect(batches.every((batch) => batch.maxSizeInBytes === 2048 && batch.sizeInBytes <= 2048)).toBe(true);
});

test('job messages: deterministic messageId, JSON content type, the message as body, jobId/stage properties', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  await transport.sendJobMessages([job(1), job(3)]);

  const [batch] = client.sender(JOBS_QUEUE).sent;
  expect(batch?.messages).toEqual([
    { messageId: `${'a'.repeat(64)}:s1`, contentType: 'application/json', body: job(1), applicationProperties: { jobId: 'a'.repeat(64), stage: 1 } },
    { messageId: `${'a'.repeat(64)}:s3`, contentType: 'application/json', body: job(3), applicationProperties: { jobId: 'a'.repeat(64), stage: 3 } },
  ]);
  expect(client.senders.has(TASKS_QUEUE)).toBe(false);
});

test('task messages: messageId is taskId:a<attempt>, properties carry jobId, stage and taskId', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  await transport.sendTaskMessages([task(7, 3)]);

  const [message] = client.sender(TASKS_QUEUE).sent[0]?.messages ?? [];
  expect(message).toEqual({
    messageId: `${task(7).taskId}:a3`,
    contentType: 'application/json',
    body: task(7, 3),
    applicationProperties: { jobId: 'a'.repeat(64), stage: 2, taskId: task(7).taskId },
  });
});

test('deliberate re-sends carry the resend nonce in the messageId, so duplicate detection lets them through', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  await transport.sendJobMessages([{ ...job(2), resend: 'n1' }]);
  await transport.sendTaskMessages([{ ...task(4), resend: 'n2' }]);
  expect(client.sender(JOBS_QUEUE).sent[0]?.messages[0]?.messageId).toBe(`${'a'.repeat(64)}:s2:rn1`);
  expect(client.sender(TASKS_QUEUE).sent[0]?.messages[0]?.messageId).toBe(`${task(4).taskId}:a1:rn2`);
});

test('an empty send opens no sender and sends nothing', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  await transport.sendJobMessages([]);
  await transport.sendTaskMessages([]);
  await transport.scheduleTaskMessages([], new Date());
  expect(client.senders.size).toBe(0);
});

test('a message too large for an empty batch is an error naming its messageId', async () => {
  const client = new FakeClient(600);
  const transport = new ServiceBusTransport(client);
  const huge = { ...task(1), taskType: 'x'.repeat(1000) };
  const sending = transport.sendTaskMessages([task(0), huge]);
  await expect(sending).rejects.toThrow(`message ${huge.taskId}:a1 does not fit in an empty Service Bus batch for ${TASKS_QUEUE} (max 600 bytes)`);
});

test('a send failure propagates to the caller', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  await transport.sendTaskMessages([task(0)]);
  client.sender(TASKS_QUEUE).failNextSend = new Error('ServiceBusError: ServerBusy');
  await expect(transport.sendTaskMessages([task(1)])).rejects.toThrow('ServerBusy');
});

test('scheduled task messages go through scheduleMessages with the Date, chunked like batches', async () => {
  const client = new FakeClient(4 * 1024);
  // One message per task here (a wave of 100 retries would go in packs of 3, as any send does).
  const transport = new ServiceBusTransport(client, { maxPackedTasks: 1 });
  const at = new Date('2030-01-02T03:04:05.000Z');
  const messages = Array.from({ length: 100 }, (_, i) => task(i, 2));

  await transport.scheduleTaskMessages(messages, at);

  const sender = client.sender(TASKS_QUEUE);
  expect(sender.sent).toEqual([]);
  expect(sender.scheduled.length).toBeGreaterThan(1);
  expect(sender.scheduled.every((call) => call.at === at)).toBe(true);
  const ids = sender.scheduled.flatMap((call) => call.messages.map((m) => m.messageId));
  expect(ids).toEqual(messages.map((m) => `${m.taskId}:a2`));
  expect(sender.scheduled[0]?.messages[0]?.applicationProperties).toEqual({ jobId: 'a'.repeat(64), stage: 2, taskId: task(0).taskId });
});

test('close closes every sender and the client, once; later sends are rejected', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  await transport.sendJobMessages([job()]);
  await transport.sendTaskMessages([task(0)]);

  await Promise.all([transport.close(), transport.close()]);
  await transport.close();

  expect(client.sender(JOBS_QUEUE).closed).toBe(1);
  expect(client.sender(TASKS_QUEUE).closed).toBe(1);
  expect(client.closed).toBe(1);
  await expect(transport.sendJobMessages([job()])).rejects.toThrow('ServiceBusTransport is closed');
});

test('close still closes the client when a sender fails to close, and reports the failure', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  await transport.sendJobMessages([job()]);
  jest.spyOn(client.sender(JOBS_QUEUE), 'close').mockRejectedValue(new Error('link detach failed'));

  await expect(transport.close()).rejects.toThrow('link detach failed');
  expect(client.closed).toBe(1);
});

describe('createServiceBusTransportFromEnv', () => {
  test('names both settings when neither is set', () => {
    expect(() => createServiceBusTransportFromEnv({})).toThrow(/ServiceBusConnection .*ServiceBusConnection__fullyQualifiedNamespace/);
    expect(() => createServiceBusTransportFromEnv({ ServiceBusConnection: '  ' })).toThrow('Service Bus is not configured');
  });

  // The SDK connects lazily, so building (and closing) a client touches no network.
  test('builds a transport from a connection string', async () => {
    const transport = createServiceBusTransportFromEnv({
      ServiceBusConnection: 'Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;',
    });
    expect(transport).toBeInstanceOf(ServiceBusTransport);
    expect(transport.name).toBe('service-bus');
    await transport.close();
  });

  test('builds a transport from a namespace with managed identity', async () => {
    const transport = createServiceBusTransportFromEnv({ ServiceBusConnection__fullyQualifiedNamespace: 'example.servicebus.windows.net' });
    expect(transport).toBeInstanceOf(ServiceBusTransport);
    await transport.close();
  });
});

test('job events go to the events topic with a deterministic messageId, the event as body and filterable properties', async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  const event: JobEvent = {
    type: 'JobCompleted',
    jobId: 'b'.repeat(64),
    jobType: 'hello_world',
    status: 'COMPLETED',
    stage: 2,
    at: '2026-11-30T16:00:00.123Z',
    result: { replies: 3 },
    resultBytes: 13,
  };
  await transport.publishEvents([event]);
  await transport.publishEvents([event]);
  const sent = client.sender(EVENTS_TOPIC).sent.flatMap((batch) => batch.messages);
  expect(sent).toHaveLength(2);
  // The same event published twice carries the same id, so the topic's duplicate detection drops the second.
  expect(sent[0]?.messageId).toBe(`${'b'.repeat(64)}:JobCompleted:s2:${Date.parse(event.at)}`);
  expect(sent[1]?.messageId).toBe(sent[0]?.messageId);
  expect(sent[0]).toMatchObject({ contentType: 'application/json', subject: 'JobCompleted', body: event });
  expect(sent[0]?.applicationProperties).toMatchObject({ type: 'JobCompleted', jobId: event.jobId, jobType: 'hello_world', status: 'COMPLETED', stage: 2 });
  await transport.close();
});

test("a job event carries the job's name, createdBy and labels as properties a subscription filters on ([label.team] = 'data')", async () => {
  const client = new FakeClient();
  const transport = new ServiceBusTransport(client);
  const base = { type: 'JobFailed', jobId: 'c'.repeat(64), jobType: 'hello_world', status: 'FAILED', stage: 1, at: '2026-11-30T16:00:00.123Z' } as const;
  const labelled: JobEvent = { ...base, name: 'nightly import', createdBy: 'ana', labels: { team: 'data', 'app.kubernetes.io/name': 'x' } };
  await transport.publishEvents([labelled, { ...base, jobId: 'd'.repeat(64) }]);
  const [first, second] = client.sender(EVENTS_TOPIC).sent.flatMap((batch) => batch.messages);
  expect(first?.body).toEqual(labelled);
  expect(first?.applicationProperties).toMatchObject({
    name: 'nightly import',
    createdBy: 'ana',
    'label.team': 'data',
    'label.app.kubernetes.io/name': 'x',
  });
  // A job without them: the properties are as before, no empty ones.
  expect(Object.keys(second?.applicationProperties ?? {}).filter((key) => key === 'name' || key === 'createdBy' || key.startsWith('label.'))).toEqual([]);
  await transport.close();
});
