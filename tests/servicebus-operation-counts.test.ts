/**
 * The Azure host's side of the operation counts (core/transport/operation-counts.ts): what the
 * Functions host receives and settles for the Service Bus triggers, counted on the app's transport.
 * The triggers run through @azure/functions test mode (InvocationContext), the engine on a harness
 * whose own sends go to the in-process queues, so the Service Bus transport here holds only what
 * the host did with the messages handed to it (and the copies it scheduled).
 */
import { HttpRequest, InvocationContext } from '@azure/functions';
import Long from 'long';
import { setAppContext } from '../functions/app-context';
import { healthDetailsHandler, healthHandler } from '../functions/http-health';
import { deadLetterHandler, jobMessageHandler, taskMessagesHandler } from '../functions/servicebus-triggers';
import { ServiceBusTransport, type ServiceBusSenderLike } from '../core/transport/service-bus-transport';
import { SUBMISSIONS_QUEUE } from '../core/transport/transport';
import { countInvocation } from '../core/transport/operation-counts';
import type { ReceivedMessage } from '../core/transport/in-process-queue';
import { captureLogger, startHarness, stuckJobs, type Harness } from './support/harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));

/** Schedules succeed and nothing else is asked of it: the triggers only reschedule through the transport. */
const sender: ServiceBusSenderLike = {
  createMessageBatch: () => Promise.reject(new Error('no batch sends expected here')),
  sendMessages: () => Promise.reject(new Error('no sends expected here')),
  scheduleMessages: (messages) => Promise.resolve((Array.isArray(messages) ? messages : [messages]).map((_, i) => Long.fromNumber(i))),
  close: () => Promise.resolve(),
};

let db: TestDatabase;
let h: Harness;
let serviceBus: ServiceBusTransport;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});
beforeEach(async () => {
  h = await startHarness(db.pool, { worker: false });
  serviceBus = new ServiceBusTransport({ createSender: () => sender, close: () => Promise.resolve() });
  setAppContext({ machine: h.machine, pool: db.pool, transport: serviceBus, logger: captureLogger(h.logs) });
});
afterEach(async () => {
  jest.restoreAllMocks();
  setAppContext(undefined);
  await serviceBus.close();
  await h.stop();
  expect(await stuckJobs(db.pool)).toEqual([]);
});

function invocation(triggerMetadata: Record<string, unknown>): InvocationContext {
  return new InvocationContext({ functionName: 'test', triggerMetadata, logHandler: () => undefined });
}

/** The trigger metadata the host gives a cardinality-many invocation. */
function batchMetadata(messages: readonly ReceivedMessage[]) {
  return {
    messageIdArray: messages.map((m) => m.messageId),
    deliveryCountArray: messages.map((m) => m.deliveryCount),
    applicationPropertiesArray: messages.map((m) => m.applicationProperties ?? {}),
  };
}

test('each trigger invocation is one execution; each message it was handed one receive and, settled, one complete', async () => {
  const { job } = await h.machine.submitJob('test.three_stages', { n: 3, tag: 'host-counts' });
  let jobMessages = 0;
  let taskMessages = 0;
  let taskInvocations = 0;
  for (let stage = 1; stage <= 3; stage++) {
    const [jobMessage] = h.transport.jobs.receive(1);
    if (!jobMessage) throw new Error(`no job message for stage ${stage}`);
    await jobMessageHandler(jobMessage.body, invocation({ messageId: jobMessage.messageId, deliveryCount: jobMessage.deliveryCount }));
    h.transport.jobs.complete(jobMessage);
    jobMessages++;
    // The host delivers a stage's messages in batches of up to 2 here: 2 invocations for 3 messages.
    for (let batch = h.transport.tasks.receive(2); batch.length > 0; batch = h.transport.tasks.receive(2)) {
      await taskMessagesHandler(
        batch.map((m) => m.body),
        invocation(batchMetadata(batch)),
      );
      for (const message of batch) h.transport.tasks.complete(message);
      taskMessages += batch.length;
      taskInvocations++;
    }
  }
  expect((await h.machine.getJob(job.jobId)).status).toBe('COMPLETED');
  expect([jobMessages, taskMessages, taskInvocations]).toEqual([3, 9, 6]);
  expect(serviceBus.operations().snapshot()).toMatchObject({
    executions: jobMessages + taskInvocations,
    receive: jobMessages + taskMessages,
    complete: jobMessages + taskMessages,
    abandon: 0,
    schedule: 0,
    send: 0,
  });
});

test('a batch given back is one abandon per message; a rescheduled message is a scheduled copy and a complete', async () => {
  jest.spyOn(h.machine, 'processTaskMessages').mockRejectedValueOnce(new Error('connection reset'));
  const ghost = (taskId: string) => ({ taskId, jobId: 'a', stage: 1, taskType: 'test.value', attempt: 1 });
  await expect(taskMessagesHandler([ghost('t1'), ghost('t2')], invocation({ messageIdArray: ['t1', 't2'], deliveryCountArray: [1, 1] }))).rejects.toThrow(
    'connection reset',
  );
  expect(serviceBus.operations().snapshot()).toMatchObject({ executions: 1, receive: 2, abandon: 2, complete: 0 });

  jest.spyOn(h.machine, 'processTaskMessages').mockRejectedValueOnce(Object.assign(new Error('sorry, too many clients already'), { code: '53300' }));
  await taskMessagesHandler([ghost('t3')], invocation({ messageIdArray: ['t3'], deliveryCountArray: [1], applicationPropertiesArray: [{}] }));
  expect(serviceBus.operations().snapshot()).toMatchObject({ executions: 2, receive: 3, abandon: 2, schedule: 1, complete: 1 });
});

test('a dead-letter trigger invocation is an execution, a receive from the sub-queue and a complete', async () => {
  await deadLetterHandler(SUBMISSIONS_QUEUE)(
    { jobType: 'no.such_type', parameters: {} },
    invocation({ messageId: 'sub-1', deliveryCount: 10, deadLetterReason: 'MaxDeliveryCountExceeded', deadLetterErrorDescription: 'gave up' }),
  );
  expect(serviceBus.operations().snapshot()).toMatchObject({ executions: 1, receive: 1, complete: 1, total: 2 });
});

test("the keyed health route shows the instance's counts since it started; the anonymous one does not", async () => {
  countInvocation(serviceBus.operations(), 2);
  const request = () => new HttpRequest({ method: 'GET', url: 'http://localhost/api/health/details' });
  const details = await healthDetailsHandler(request(), invocation({}));
  expect(details.jsonBody).toMatchObject({ status: 'healthy', operations: { executions: 1, receive: 2, total: 2 } });
  expect((await healthHandler(request(), invocation({}))).jsonBody).not.toHaveProperty('operations');
});
