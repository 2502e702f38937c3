import { InProcessQueue, MessageLockLostError, MessageSizeExceededError, STANDARD_MAX_MESSAGE_BYTES } from '../core/transport/in-process-queue';

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

test('a body travels as JSON, as an application/json Service Bus message does: no receiver shares or changes the stored copy', () => {
  const q = queue();
  const body = { taskId: 't1', nested: { attempt: 1 } };
  q.send([{ messageId: 'a', body, applicationProperties: { jobId: 'j' } }]);
  body.nested.attempt = 99; // the sender's object changes after the send: the queue kept its own copy
  const [first] = q.receive(1);
  expect(first?.body).toEqual({ taskId: 't1', nested: { attempt: 1 } });
  (first?.body as { nested: { attempt: number } }).nested.attempt = 7; // a receiver changes what it got
  q.abandon(first!);
  const [again] = q.receive(1);
  expect(again?.body).toEqual({ taskId: 't1', nested: { attempt: 1 } });
  expect(again?.applicationProperties).toEqual({ jobId: 'j' });
  q.complete(again!);
  // What JSON cannot carry is refused at send, and nothing is enqueued.
  expect(() =>
    q.send([
      { messageId: 'b', body: 1 },
      { messageId: 'c', body: undefined },
    ]),
  ).toThrow(/not JSON-serialisable/);
  expect(q.activeCount).toBe(0);
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

test('each lock expires on its own: a renewed lock outlives one taken at the same time, a settled one never expires', async () => {
  // Times in quarters of the lock (800 ms), so a loaded machine's late timers (CI runs the suites
  // in parallel) stay well inside each window: renewed at 1/2, checked at 5/4, again at 7/4.
  const q = queue({ lockDurationMs: 800 });
  q.send([
    { messageId: 'renewed', body: 1 },
    { messageId: 'left', body: 2 },
    { messageId: 'settled', body: 3 },
  ]);
  const [renewed, left, settled] = q.receive(3);
  q.complete(settled!);
  await sleep(400);
  q.renewLock(renewed!);
  await sleep(600);
  // 1,000 ms after the receive: only the lock that was neither renewed nor settled has expired.
  const back = q.receive(3);
  expect(back.map((m) => [m.messageId, m.deliveryCount])).toEqual([['left', 2]]);
  expect(() => q.complete(left!)).toThrow(MessageLockLostError);
  q.complete(back[0]!);
  await sleep(400);
  // 1,000 ms after its renewal the renewed lock has expired too, and nothing else came back.
  expect(q.receive(3).map((m) => [m.messageId, m.deliveryCount])).toEqual([['renewed', 2]]);
  expect(() => q.renewLock(renewed!)).toThrow(MessageLockLostError);
  expect(q.stats.lockExpired).toBe(2);
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
  // Half a second ahead: a GC pause or a descheduled process must not make it visible before the first receive.
  q.send([{ messageId: 'later', body: 1 }], new Date(Date.now() + 500));
  q.send([
    { messageId: 'now', body: 2 },
    { messageId: 'now', body: 2 },
  ]);
  expect(q.receive(10).map((m) => m.messageId)).toEqual(['now']);
  expect(q.stats.duplicatesDropped).toBe(1);
  await sleep(600);
  expect(q.receive(10).map((m) => m.messageId)).toEqual(['later']);
  q.close();
});

/** A source of `total` numbered messages, counting its reads; `failFirst` reads reject. */
function numberedSource(total: number, failFirst = 0) {
  let next = 0;
  let reads = 0;
  return {
    get reads() {
      return reads;
    },
    source: {
      next: (limit: number) => {
        reads++;
        if (reads <= failFirst) return Promise.reject(new Error(`read ${reads} failed`));
        const messages = Array.from({ length: Math.min(limit, total - next) }, (_, i) => ({ messageId: `m${next + i}`, body: next + i }));
        next += messages.length;
        return Promise.resolve({ messages, done: next >= total });
      },
    },
  };
}

async function until(condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(2);
  }
}

test('an attached source is pulled a page at a time, only when the queue runs below its low-water mark', async () => {
  const q = queue({ feeder: { lowWaterMark: 10, pageSize: 10 } });
  const counted = numberedSource(95);
  q.attachSource(counted.source);
  await until(() => q.visibleCount === 10);
  await sleep(10);
  // Full at the low-water mark: nothing more is read, and only taken-in messages have state.
  expect(counted.reads).toBe(1);
  expect(q.activeCount).toBe(11); // 10 visible + the pending source
  const received: number[] = [];
  while (received.length < 95) {
    const batch = q.receive(7);
    for (const message of batch) {
      received.push(message.body as number);
      q.complete(message);
    }
    expect(q.visibleCount).toBeLessThanOrEqual(20);
    if (batch.length === 0) await sleep(1);
  }
  expect(received).toEqual(Array.from({ length: 95 }, (_, i) => i));
  await until(() => q.pendingSources === 0);
  expect(q.activeCount).toBe(0);
  expect(q.feeder.stats).toMatchObject({ pagesRead: 10, messagesRead: 95, readErrors: 0 });
  q.close();
});

test('pulled messages keep delivery semantics: duplicate detection, lock expiry and delivery count, dead-letter', async () => {
  const q = queue({ duplicateDetectionWindowMs: 10_000, lockDurationMs: 20, maxDeliveryCount: 2, feeder: { lowWaterMark: 5, pageSize: 5 } });
  q.send([{ messageId: 'm0', body: 0 }]);
  q.attachSource(numberedSource(3).source);
  await until(() => q.pendingSources === 0);
  expect(q.stats.duplicatesDropped).toBe(1);
  expect(q.receive(10).map((m) => m.body)).toEqual([0, 1, 2]);
  await sleep(40);
  const again = q.receive(10);
  expect(again.map((m) => m.deliveryCount)).toEqual([2, 2, 2]);
  await sleep(40);
  expect(q.deadLetters.map((m) => m.messageId)).toEqual(['m0', 'm1', 'm2']);
  q.close();
});

test('a failing read is retried with backoff; a source that keeps failing is dropped with its error kept', async () => {
  const q = queue({ feeder: { lowWaterMark: 5, pageSize: 5, maxConsecutiveFailures: 3 } });
  const flaky = numberedSource(4, 2);
  q.attachSource(flaky.source);
  await until(() => q.visibleCount === 4);
  expect(q.feeder.stats).toMatchObject({ readErrors: 2, sourcesDropped: 0 });

  const broken = { next: () => Promise.reject(new Error('database gone')) };
  q.attachSource(broken);
  q.attachSource(numberedSource(1).source);
  await until(() => q.pendingSources === 0, 3000);
  expect(q.feeder.stats.sourcesDropped).toBe(1);
  expect(String(q.feeder.failures[0])).toContain('database gone');
  expect(q.visibleCount).toBe(5); // the third source was read after the broken one was given up
  q.close();
});

test('a message over the size limit (Service Bus Standard: 256 KB) is refused at send, and nothing of its batch is queued', () => {
  const q = new InProcessQueue('sized', { lockDurationMs: 1000, maxDeliveryCount: 3, duplicateDetectionWindowMs: 0 });
  const big = 'x'.repeat(STANDARD_MAX_MESSAGE_BYTES);
  expect(() =>
    q.send([
      { messageId: 'small', body: 1 },
      { messageId: 'big', body: big },
    ]),
  ).toThrow(MessageSizeExceededError);
  expect(q.visibleCount).toBe(0);
  // The largest pack the engine builds is far inside it: 64 tasks with ids at their longest.
  const task = {
    taskId: `${'f'.repeat(64)}-s${2 ** 31 - 1}-t${2 ** 31 - 1}`,
    jobId: 'f'.repeat(64),
    stage: 2 ** 31 - 1,
    taskType: 't'.repeat(200),
    attempt: 2 ** 31 - 1,
    resend: 'r'.repeat(200),
  };
  expect(() => q.send([{ messageId: 'pack', body: { packed: Array.from({ length: 64 }, () => task) } }])).not.toThrow();
  expect(q.visibleCount).toBe(1);
});
