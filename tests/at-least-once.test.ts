import type { JobQueueMessage, TaskQueueMessage } from '../models';
import type { InProcessTransport } from '../core/transport/in-process-transport';
import type { Transport } from '../core/transport/transport';
import { startHarness, waitForJob, useTestDatabase } from './support/harness';
import { countTaskDeliveries } from './support/task-messages';

const db = useTestDatabase();

/** Seeded shuffle so a failing order can be replayed. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** Every message sent twice, task batches shuffled, and old job messages replayed later. */
function duplicatingTransport(inner: InProcessTransport, seed: number): Transport {
  const sentJobs: JobQueueMessage[] = [];
  return {
    name: 'duplicating',
    durable: false,
    sendReceipt: (queue, receipt, properties) => inner.sendReceipt(queue, receipt, properties),
    publishEvents: (events) => inner.publishEvents(events),
    close: () => inner.close(),
    scheduleTaskMessages: (m, at) => inner.scheduleTaskMessages(m, at),
    sendTaskMessages: async (messages: readonly TaskQueueMessage[]) => {
      await inner.sendTaskMessages(shuffled([...messages, ...messages], seed));
    },
    sendJobMessages: async (messages) => {
      // Replay every earlier job message too: stale stage messages arrive after newer ones.
      await inner.sendJobMessages([...messages, ...shuffled(sentJobs, seed), ...messages]);
      sentJobs.push(...messages);
    },
  };
}

test.each([1, 2, 3])('every message delivered twice and out of order (seed %i): same final state, each side effect once', async (seed) => {
  const n = 40;
  const clean = await startHarness(db.pool);
  const reference = await waitForJob(clean.machine, (await clean.machine.submitJob('test.three_stages', { n, tag: `clean-${seed}` })).job.jobId);
  await clean.worker?.drain();
  await clean.stop();

  const h = await startHarness(db.pool, { wrapTransport: (t) => duplicatingTransport(t, seed), worker: { taskBatchSize: 7, taskConcurrency: 6 } });
  const delivered = countTaskDeliveries(h.machine);
  const { job } = await h.machine.submitJob('test.three_stages', { n, tag: `dup-${seed}` });
  const done = await waitForJob(h.machine, job.jobId);
  await h.worker?.drain();

  // Duplicates shuffled into different batches lock the same rows: one lock order means no deadlock.
  expect(h.logs.filter((line) => line.includes('deadlock'))).toEqual([]);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual(reference.result);
  expect(done.stages.map((s) => [s.total, s.completed, s.failed, s.status])).toEqual(reference.stages.map((s) => [s.total, s.completed, s.failed, s.status]));
  expect(h.effects.total).toBe(3 * n);
  expect(h.effects.maxPerTask()).toBe(1);
  // Every task message twice (packed or not, core/transport/task-packing.ts), each handed to the engine.
  expect(delivered()).toBeGreaterThanOrEqual(2 * 3 * n);
  expect(h.transport.tasks.deadLetters).toEqual([]);
  expect(h.transport.jobs.deadLetters).toEqual([]);
  await h.stop();
});

test('a redelivery while the first handler still runs (lock lost) does not run the task twice', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let firstRunSeen!: () => void;
  const firstRun = new Promise<void>((resolve) => (firstRunSeen = resolve));
  // Handler starts of the first task held (stage 1's task 0): a second start while the first still waits is the bug.
  let held: string | undefined;
  let heldStarts = 0;
  const h = await startHarness(db.pool, {
    queue: { lockDurationMs: 40 },
    worker: { autoRenewLock: false },
    beforeTask: async (taskId, index) => {
      if (index === 0) {
        held ??= taskId;
        if (taskId === held) heldStarts++;
        firstRunSeen();
        await gate;
      }
    },
  });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 2, tag: 'lock-lost' });
  await firstRun;
  // Wait for the lock to expire and the message to be redelivered and acknowledged as a duplicate.
  // The first delivery of the held task's message can never be completed (its lock is lost while
  // its handler waits), so every message sent counts as completed only once the redelivered copy
  // was handled, while the first handler still runs. Waited for, so the test cannot pass without
  // the redelivery having been handled at all.
  const stats = h.transport.tasks.stats;
  for (let waited = 0; stats.lockExpired === 0 || stats.completed < stats.sent; waited++) {
    if (waited > 500) throw new Error(`the redelivered message was never handled: ${JSON.stringify(stats)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(stats.delivered).toBeGreaterThan(stats.sent);
  expect(heldStarts).toBe(1);
  release();
  const done = await waitForJob(h.machine, job.jobId);
  await h.worker?.drain();
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: 2, sum: 4 });
  expect(h.effects.maxPerTask()).toBe(1);
  expect(heldStarts).toBe(1);
  expect(h.transport.tasks.stats.lockExpired).toBeGreaterThanOrEqual(1);
  expect(h.logs.some((l) => l.includes('message lock lost before settlement'))).toBe(true);
  await h.stop();
});

test('a crash between commit and send loses nothing: the outbox sweep sends what was committed', async () => {
  let failNextSend = true;
  const h = await startHarness(db.pool, {
    wrapTransport: (inner): Transport => ({
      name: 'flaky',
      durable: false,
      sendReceipt: (queue, receipt, properties) => inner.sendReceipt(queue, receipt, properties),
      publishEvents: (events) => inner.publishEvents(events),
      close: () => inner.close(),
      scheduleTaskMessages: (m, at) => inner.scheduleTaskMessages(m, at),
      sendJobMessages: (m) => inner.sendJobMessages(m),
      sendTaskMessages: async (messages) => {
        if (failNextSend) {
          failNextSend = false;
          throw new Error('connection to the message bus reset');
        }
        await inner.sendTaskMessages(messages);
      },
    }),
  });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 5, tag: 'outbox' });
  await h.worker?.drain();
  // The stage started (tasks committed) but its messages never went out: the job waits.
  const waiting = await h.machine.getJob(job.jobId);
  expect(waiting.status).toBe('PROCESSING');
  expect(waiting.stages[0]).toMatchObject({ total: 5, completed: 0 });
  const pending = await db.pool.query('SELECT kind FROM coremachine.outbox WHERE job_id = $1', [job.jobId]);
  expect(pending.rows).toEqual([{ kind: 'stage_tasks' }]);

  expect(await h.machine.outbox.sweep(0)).toBe(1);
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: 5, sum: 25 });
  // An outbox row is deleted after its send, by the handler that committed it: once the workers
  // are idle every send has happened, and no row may be left.
  await h.worker?.drain();
  expect((await db.pool.query('SELECT count(*)::int AS n FROM coremachine.outbox')).rows[0]).toEqual({ n: 0 });
  await h.stop();
});
