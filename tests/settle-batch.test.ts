/**
 * Settling is carried out in one place (core/transport/settle-batch.ts) through a small host
 * interface that the in-process queue and the Service Bus triggers each implement. The same table
 * of situations runs against both hosts, and each must leave every message in the same state.
 */
import { InvocationContext } from '@azure/functions';
import { TransientDatabaseError } from '../core/db/transient-errors';
import { MalformedMessageError } from '../core/errors';
import { createLogger } from '../core/logger';
import type { HandlingResult, SettlementPolicy } from '../core/message-settlement';
import { InProcessQueue } from '../core/transport/in-process-queue';
import { heldMessage, inProcessHost } from '../core/transport/queue-consumer';
import { settleBatch, type HeldMessage } from '../core/transport/settle-batch';
import { TASKS_QUEUE } from '../core/transport/transport';
import { serviceBusHost } from '../functions/servicebus-triggers';
import { startHarness, type Harness } from './support/harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));

const policy: SettlementPolicy = { maxDeliveryCount: 10, rescheduleBaseMs: 1, rescheduleMaxMs: 2, deferBaseMs: 1, deferMaxMs: 2, random: () => 0 };
const ok = (kind: string, extra: Record<string, unknown> = {}): HandlingResult => ({ ok: true, outcome: { kind, ...extra } });
const failed = (error: unknown): HandlingResult => ({ ok: false, error });

/** What became of one message, whichever host settled it. */
type Fate = 'completed' | 'redelivered' | `dead-lettered ${string}` | 'rescheduled as ~r1';

const situations: Array<{ name: string; deliveryCount: number; results: HandlingResult[]; fates: Fate[] }> = [
  { name: 'every task settled', deliveryCount: 1, results: [ok('completed'), ok('failed'), ok('duplicate')], fates: ['completed', 'completed', 'completed'] },
  {
    name: 'one malformed message among settled ones: it alone is dead-lettered',
    deliveryCount: 1,
    results: [ok('completed'), ok('malformed', { error: new MalformedMessageError('not a task message') }), ok('completed')],
    fates: ['completed', 'dead-lettered MalformedMessageError', 'completed'],
  },
  {
    name: 'a deferral and a transient fault: copies rescheduled, originals completed',
    deliveryCount: 1,
    results: [ok('deferred', { reason: 'full' }), failed(new TransientDatabaseError(new Error('connection refused'))), ok('completed')],
    fates: ['rescheduled as ~r1', 'rescheduled as ~r1', 'completed'],
  },
  // A Functions trigger can only give back a whole batch; both hosts do, and the engine makes the
  // redelivered copies of the settled ones duplicates.
  {
    name: 'one message must be redelivered: the whole batch goes back',
    deliveryCount: 1,
    results: [ok('completed'), failed(new Error('invalid transition')), ok('malformed', { error: new MalformedMessageError('x') })],
    fates: ['redelivered', 'redelivered', 'redelivered'],
  },
  {
    name: 'an ordinary error on the last delivery: dead-lettered with the error',
    deliveryCount: 10,
    results: [failed(new Error('boom'))],
    fates: ['dead-lettered MaxDeliveryCountExceeded'],
  },
];

let db: TestDatabase;
let h: Harness;
beforeAll(async () => {
  db = await createTestDatabase();
  h = await startHarness(db.pool, { worker: false });
});
afterAll(async () => {
  await h.stop();
  await db.drop();
});

const bodies = (count: number, tag: string) => Array.from({ length: count }, (_, i) => ({ probe: `${tag}-${i}` }));
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe.each(situations)('$name', ({ name, deliveryCount, results, fates }) => {
  test('the in-process queue', async () => {
    const queue = new InProcessQueue(TASKS_QUEUE, { lockDurationMs: 60_000, maxDeliveryCount: 10, duplicateDetectionWindowMs: 0 });
    queue.send(bodies(results.length, name).map((body, i) => ({ messageId: `m${i}`, body })));
    // Earlier deliveries, so this one is delivery `deliveryCount`.
    for (let delivery = 1; delivery < deliveryCount; delivery++) for (const message of queue.receive(results.length)) queue.abandon(message);
    const batch = queue.receive(results.length);
    await settleBatch(inProcessHost(queue, batch, createLogger('silent')), batch.map(heldMessage), results, policy);
    await settle();
    const visible = queue.receive(100).map((message) => message.messageId);
    const dead = new Map(queue.deadLetters.map((letter) => [letter.messageId, letter.deadLetterReason]));
    const fateOf = (id: string): Fate =>
      dead.has(id)
        ? `dead-lettered ${dead.get(id) ?? ''}`
        : visible.includes(`${id}~r1`)
          ? 'rescheduled as ~r1'
          : visible.includes(id)
            ? 'redelivered'
            : 'completed';
    expect(batch.map((message) => fateOf(message.messageId))).toEqual(fates);
    queue.close();
  });

  test('the Service Bus trigger', async () => {
    const before = (await h.machine.listDeadLetters()).length;
    const messages: HeldMessage[] = bodies(results.length, name).map((body, i) => ({
      messageId: `m${i}`,
      body,
      deliveryCount,
      enqueuedTime: new Date(),
      applicationProperties: {},
    }));
    const context = new InvocationContext({ functionName: 'tasks-queue', logHandler: () => undefined });
    const appContext = { machine: h.machine, pool: db.pool, transport: h.transport, logger: createLogger('silent'), config: {} as never };
    // The trigger's only way to give messages back is to throw: the host then abandons the whole batch.
    const thrown = await settleBatch(serviceBusHost(context, TASKS_QUEUE, messages, appContext), messages, results, policy).then(
      () => false,
      () => true,
    );
    await settle();
    const copies = h.transport.tasks.receive(100).map((message) => message.messageId);
    for (const copy of h.transport.tasks.receive(100)) h.transport.tasks.complete(copy);
    const recorded = (await h.machine.listDeadLetters()).slice(0, (await h.machine.listDeadLetters()).length - before);
    const dead = new Map(recorded.map((letter) => [letter.messageId, letter.reason]));
    const fateOf = (id: string): Fate =>
      thrown ? 'redelivered' : dead.has(id) ? `dead-lettered ${dead.get(id) ?? ''}` : copies.includes(`${id}~r1`) ? 'rescheduled as ~r1' : 'completed';
    expect(messages.map((message) => fateOf(message.messageId ?? ''))).toEqual(fates);
  });
});
