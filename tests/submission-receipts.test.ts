/**
 * Machines that submit by Service Bus message get an answer: with `replyTo` (the message's own
 * property, or the body's), a receipt goes there — accepted with the job id and whether it was new,
 * or refused with the zod issues — carrying the submission's correlationId (else its messageId).
 * The same through the in-process worker (`coremachine dev`) and the Functions trigger.
 */
import { InvocationContext } from '@azure/functions';
import { SubmissionReceipt } from '../models';
import { setAppContext } from '../functions/app-context';
import { submissionHandler } from '../functions/servicebus-triggers';
import { captureLogger, useHarnessPerTest, waitForJob } from './support/harness';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));

const ctx = useHarnessPerTest();

/** The receipts that reached a reply queue, parsed by their schema. */
async function receiptsOn(queueName: string, count: number): Promise<Array<{ receipt: SubmissionReceipt; messageId: string; correlationId: unknown }>> {
  const queue = ctx.h().transport.replyQueue(queueName);
  const out: Array<{ receipt: SubmissionReceipt; messageId: string; correlationId: unknown }> = [];
  for (let i = 0; i < 200 && out.length < count; i++) {
    for (const message of queue.receive(count - out.length)) {
      out.push({ receipt: SubmissionReceipt.parse(message.body), messageId: message.messageId, correlationId: message.applicationProperties?.correlationId });
      queue.complete(message);
    }
    if (out.length < count) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return out;
}

test('in-process: accepted, then accepted again as not new, both tied to their correlationIds', async () => {
  const h = ctx.h();
  const body = { jobType: 'hello_world', parameters: { n: 2 } };
  h.transport.submissions.send([{ messageId: 'sub-1', body, replyTo: 'erp-receipts', correlationId: 'order-17' }]);
  const [first] = await receiptsOn('erp-receipts', 1);
  expect(first?.receipt).toMatchObject({ status: 'accepted', correlationId: 'order-17', jobType: 'hello_world', created: true });
  expect(first?.correlationId).toBe('order-17');
  // The correlationId falls back to the message id; producers that cannot set properties put both in the body.
  h.transport.submissions.send([{ messageId: 'sub-2', body: { ...body, replyTo: 'erp-receipts' } }]);
  h.transport.submissions.send([{ messageId: 'sub-3', body: { ...body, replyTo: 'erp-receipts', correlationId: 'order-18' } }]);
  const again = await receiptsOn('erp-receipts', 2);
  // Two submission consumers may answer in either order: compared by correlationId.
  const byCorrelation = (a: { correlationId: string | null }, b: { correlationId: string | null }) =>
    String(a.correlationId).localeCompare(String(b.correlationId));
  expect(again.map(({ receipt }) => receipt).sort(byCorrelation)).toEqual([
    expect.objectContaining({ status: 'accepted', correlationId: 'order-18', created: false }),
    expect.objectContaining({
      status: 'accepted',
      correlationId: 'sub-2',
      created: false,
      jobId: first?.receipt.status === 'accepted' ? first.receipt.jobId : '',
    }),
  ]);
  expect((await waitForJob(h.machine, first?.receipt.status === 'accepted' ? first.receipt.jobId : '')).status).toBe('COMPLETED');
  expect(h.transport.submissions.deadLetters).toEqual([]);
});

test('in-process: a refused submission gets the issues in its receipt and is still dead-lettered; a replyTo naming an engine queue is refused', async () => {
  const h = ctx.h();
  h.transport.submissions.send([
    { messageId: 'bad-1', body: { jobType: 'hello_world', parameters: { n: 'many' } }, replyTo: 'erp-receipts', correlationId: 'order-19' },
  ]);
  const [refused] = await receiptsOn('erp-receipts', 1);
  expect(refused?.receipt).toMatchObject({ status: 'refused', correlationId: 'order-19', error: { type: 'ValidationError' } });
  expect(refused?.receipt.status === 'refused' ? refused.receipt.error.issues : []).toEqual([expect.objectContaining({ path: ['n'] })]);

  h.transport.submissions.send([{ messageId: 'bad-2', body: { jobType: 'hello_world', parameters: { n: 1 } }, replyTo: 'coremachine-jobs' }]);
  await h.worker?.drain();
  expect(h.transport.jobs.deadLetters).toEqual([]);
  const dead = Object.fromEntries(h.transport.submissions.deadLetters.map((letter) => [letter.messageId, letter]));
  expect(dead['bad-1']).toMatchObject({ deadLetterReason: 'ValidationError' });
  expect(dead['bad-2']?.deadLetterErrorDescription).toContain("replyTo must not be one of the engine's own queues");
});

test('the Functions trigger reads replyTo and correlationId from the message properties and sends the receipt', async () => {
  const h = ctx.h();
  setAppContext({ machine: h.machine, pool: ctx.db().pool, transport: h.transport, logger: captureLogger(h.logs) });
  try {
    const invocation = (metadata: Record<string, unknown>) =>
      new InvocationContext({ functionName: 'submissions-queue', triggerMetadata: metadata, logHandler: () => undefined });
    await submissionHandler(
      { jobType: 'hello_world', parameters: { n: 1 } },
      invocation({ messageId: 'sb-1', replyTo: 'erp-receipts', correlationId: 'order-20', deliveryCount: 1 }),
    );
    await submissionHandler({ jobType: 'nope', parameters: {} }, invocation({ messageId: 'sb-2', replyTo: 'erp-receipts', deliveryCount: 1 }));
    const receipts = await receiptsOn('erp-receipts', 2);
    expect(receipts.map(({ receipt, messageId }) => [receipt.status, receipt.correlationId, messageId])).toEqual([
      ['accepted', 'order-20', 'receipt:sb-1'],
      ['refused', 'sb-2', 'receipt:sb-2'],
    ]);
    expect(receipts[1]?.receipt).toMatchObject({ error: { type: 'UnknownJobTypeError' } });
    const accepted = receipts[0]?.receipt;
    if (accepted?.status !== 'accepted') throw new Error('expected an accepted receipt');
    expect((await waitForJob(h.machine, accepted.jobId)).status).toBe('COMPLETED');
  } finally {
    setAppContext(undefined);
  }
});
