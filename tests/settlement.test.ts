/**
 * The one settlement policy both hosts follow (core/worker.ts via the queue consumer, and the
 * Service Bus triggers): every row is a situation a message can be in, and what must happen to it.
 */
import { TransientDatabaseError } from '../core/db/transient-errors';
import { InvalidTransitionError, MalformedMessageError, TaskNotFoundError, UnknownJobTypeError, ValidationError } from '../core/errors';
import {
  decideSettlement,
  DEFAULT_SETTLEMENT_POLICY,
  RESCHEDULES_PROPERTY,
  rescheduledMessageId,
  reschedulesOf,
  type HandlingResult,
  type Settlement,
  type SettlementPolicy,
} from '../core/message-settlement';

const policy: SettlementPolicy = {
  maxDeliveryCount: 10,
  rescheduleBaseMs: 1000,
  rescheduleMaxMs: 60_000,
  deferBaseMs: 200,
  deferMaxMs: 4000,
  random: () => 0.5,
};
const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

const rows: Array<[string, HandlingResult, { deliveryCount?: number; reschedules?: number }, Settlement]> = [
  ['success (task completed)', { ok: true, outcome: { kind: 'completed' } }, { deliveryCount: 1 }, { action: 'complete' }],
  ['success (job message: stage started)', { ok: true, outcome: { kind: 'started' } }, { deliveryCount: 1 }, { action: 'complete' }],
  ['success without an outcome (submission accepted)', { ok: true }, { deliveryCount: 1 }, { action: 'complete' }],
  ['task failed by its handler: recorded, the message is done', { ok: true, outcome: { kind: 'failed' } }, { deliveryCount: 1 }, { action: 'complete' }],
  ['duplicate (task already COMPLETED)', { ok: true, outcome: { kind: 'duplicate' } }, { deliveryCount: 3 }, { action: 'complete' }],
  ['fenced (claim no longer current)', { ok: true, outcome: { kind: 'fenced' } }, { deliveryCount: 2 }, { action: 'complete' }],
  [
    'malformed task message (engine outcome)',
    { ok: true, outcome: { kind: 'malformed', error: new MalformedMessageError('task message does not match TaskQueueMessage') } },
    { deliveryCount: 1 },
    { action: 'deadLetter', reason: 'MalformedMessageError', description: 'task message does not match TaskQueueMessage' },
  ],
  [
    'task that does not exist',
    { ok: true, outcome: { kind: 'malformed', error: new TaskNotFoundError('t-1') } },
    { deliveryCount: 1 },
    { action: 'deadLetter', reason: 'TaskNotFoundError', description: 'task t-1 does not exist' },
  ],
  [
    'nonRetryable error (unknown job type)',
    { ok: false, error: new UnknownJobTypeError('nope', ['hello_world']) },
    { deliveryCount: 1 },
    { action: 'deadLetter', reason: 'UnknownJobTypeError', description: 'unknown job type "nope" (registered: hello_world)' },
  ],
  [
    'nonRetryable error (invalid submission)',
    { ok: false, error: new ValidationError('bad parameters', []) },
    { deliveryCount: 1 },
    { action: 'deadLetter', reason: 'ValidationError', description: 'bad parameters' },
  ],
  [
    'ordinary error: redelivered',
    { ok: false, error: new InvalidTransitionError('job', 'j', 'PROCESSING', 'PROCESSING') },
    { deliveryCount: 1 },
    { action: 'abandon', reason: 'InvalidTransitionError: invalid job transition PROCESSING → PROCESSING for j' },
  ],
  [
    'ordinary error one delivery before the max: still redelivered',
    { ok: false, error: new Error('boom') },
    { deliveryCount: 9 },
    { action: 'abandon', reason: 'Error: boom' },
  ],
  [
    'ordinary error on the last delivery: dead-lettered with the error, not a bare MaxDeliveryCountExceeded',
    { ok: false, error: new Error('boom') },
    { deliveryCount: 10 },
    { action: 'deadLetter', reason: 'MaxDeliveryCountExceeded', description: 'failed on delivery 10 of 10: Error: boom' },
  ],
  [
    'deferred by a concurrency limit: rescheduled with the deferral backoff, even on the last delivery (not an attempt)',
    { ok: true, outcome: { kind: 'deferred', reason: 'all 5 slot(s) of t: are taken' } },
    { deliveryCount: 10, reschedules: 1 },
    { action: 'reschedule', delayMs: 300, reason: 'all 5 slot(s) of t: are taken', deferred: true },
  ],
  [
    'deferred by a concurrency limit many times: the delay is capped',
    { ok: true, outcome: { kind: 'deferred', reason: 'full' } },
    { deliveryCount: 1, reschedules: 40 },
    { action: 'reschedule', delayMs: 3000, reason: 'full', deferred: true },
  ],
  [
    'deferred by a rate limit: not before the token is due',
    { ok: true, outcome: { kind: 'deferred', reason: 'rate', retryAfterMs: 900 } },
    { deliveryCount: 1 },
    { action: 'reschedule', delayMs: 900, reason: 'rate', deferred: true },
  ],
  [
    'transient DB error (too many connections): rescheduled with backoff',
    { ok: false, error: pgError('53300', 'too many connections for role "cm_app"') },
    { deliveryCount: 1 },
    { action: 'reschedule', delayMs: 750, reason: 'Error: too many connections for role "cm_app"' },
  ],
  [
    'transient DB error wrapped by the engine (admin shutdown)',
    { ok: false, error: new TransientDatabaseError(pgError('57P01', 'terminating connection due to administrator command')) },
    { deliveryCount: 1, reschedules: 2 },
    {
      action: 'reschedule',
      delayMs: 3000,
      reason: 'TransientDatabaseError: database unavailable for now: terminating connection due to administrator command',
    },
  ],
  [
    'transient DB error on the last delivery: rescheduled, never dead-lettered',
    { ok: false, error: pgError('40001', 'could not serialize access') },
    { deliveryCount: 10 },
    { action: 'reschedule', delayMs: 750, reason: 'Error: could not serialize access' },
  ],
  [
    'transient DB error after many reschedules: the delay stops at the cap',
    { ok: false, error: new Error('Connection terminated unexpectedly') },
    { deliveryCount: 1, reschedules: 40 },
    { action: 'reschedule', delayMs: 45_000, reason: 'Error: Connection terminated unexpectedly' },
  ],
  [
    'pool acquisition timeout is transient',
    { ok: false, error: new Error('timeout exceeded when trying to connect') },
    { deliveryCount: 4 },
    { action: 'reschedule', delayMs: 750, reason: 'Error: timeout exceeded when trying to connect' },
  ],
];

test.each(rows)('%s', (_label, result, delivery, expected) => {
  expect(decideSettlement(result, delivery, policy)).toEqual(expected);
});

test('reschedule delays are jittered between half and all of the backoff ceiling', () => {
  const error = pgError('57P03', 'the database system is starting up');
  const at = (random: number, reschedules: number) => decideSettlement({ ok: false, error }, { reschedules }, { ...policy, random: () => random });
  expect(at(0, 0)).toMatchObject({ delayMs: 500 });
  expect(at(0.999999, 0)).toMatchObject({ delayMs: 1000 });
  expect(at(0, 3)).toMatchObject({ delayMs: 4000 });
  expect(at(0.999999, 10)).toMatchObject({ delayMs: 60_000 });
});

test('copies get a new messageId per reschedule and carry their count', () => {
  expect(rescheduledMessageId('job-1:s2', 1)).toBe('job-1:s2~r1');
  expect(rescheduledMessageId('job-1:s2~r1', 2)).toBe('job-1:s2~r2');
  expect(reschedulesOf({ [RESCHEDULES_PROPERTY]: 3 })).toBe(3);
  expect(reschedulesOf({ [RESCHEDULES_PROPERTY]: 'x' })).toBe(0);
  expect(reschedulesOf(undefined)).toBe(0);
});

test('the default policy is the Bicep max delivery count', () => {
  expect(DEFAULT_SETTLEMENT_POLICY.maxDeliveryCount).toBe(10);
});
