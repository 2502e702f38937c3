import { InProcessQueue, MessageLockLostError } from '../core/transport/in-process-queue';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function queue(options: Partial<ConstructorParameters<typeof InProcessQueue>[1]> = {}) {
  return new InProcessQueue('q', { lockDurationMs: 60_000, maxDeliveryCount: 3, duplicateDetectionWindowMs: 0, ...options });
}

test('peek-lock: a received message is invisible until completed; abandon makes it visible again with a higher delivery count', () => {
  const q = queue();
  q.send([{ messageId: 'a', body: { x: 1 } }]);
  const [first] = q.receive(10);
  expect(first).toMatchObject({ messageId: 'a', body: { x: 1 }, deliveryCount: 1 });
  expect(q.receive(10)).toEqual([]);
  q.abandon(first!);
  const [second] = q.receive(10);
  expect(second?.deliveryCount).toBe(2);
  q.complete(second!);
  expect(q.activeCount).toBe(0);
  expect(() => q.complete(second!)).toThrow(MessageLockLostError);
  q.close();
});

test('an expired lock redelivers the message; settling with the old lock throws', async () => {
  const q = queue({ lockDurationMs: 20 });
  q.send([{ messageId: 'a', body: 1 }]);
  const [first] = q.receive(1);
  await sleep(40);
  const [again] = q.receive(1);
  expect(again?.deliveryCount).toBe(2);
  expect(() => q.complete(first!)).toThrow(MessageLockLostError);
  q.complete(again!);
  expect(q.stats.lockExpired).toBe(1);
  q.close();
});

test('past the max delivery count the message is dead-lettered with the reason', () => {
  const q = queue({ maxDeliveryCount: 2 });
  q.send([{ messageId: 'a', body: 1 }]);
  q.abandon(q.receive(1)[0]!);
  q.abandon(q.receive(1)[0]!);
  expect(q.receive(1)).toEqual([]);
  expect(q.deadLetters).toEqual([expect.objectContaining({ messageId: 'a', deadLetterReason: 'MaxDeliveryCountExceeded', deliveryCount: 2 })]);
  q.close();
});

test('explicit dead-letter keeps the reason and description', () => {
  const q = queue();
  q.send([{ messageId: 'a', body: 'junk' }]);
  q.deadLetter(q.receive(1)[0]!, 'MalformedMessageError', 'not a TaskQueueMessage');
  expect(q.deadLetters[0]).toMatchObject({ deadLetterReason: 'MalformedMessageError', deadLetterErrorDescription: 'not a TaskQueueMessage', deliveryCount: 1 });
  q.close();
});

test('scheduled messages appear at their time; duplicate detection drops a repeated messageId', async () => {
  const q = queue({ duplicateDetectionWindowMs: 10_000 });
  q.send([{ messageId: 'later', body: 1 }], new Date(Date.now() + 50));
  q.send([{ messageId: 'now', body: 2 }, { messageId: 'now', body: 2 }]);
  expect(q.receive(10).map((m) => m.messageId)).toEqual(['now']);
  expect(q.stats.duplicatesDropped).toBe(1);
  await sleep(80);
  expect(q.receive(10).map((m) => m.messageId)).toEqual(['later']);
  q.close();
});
