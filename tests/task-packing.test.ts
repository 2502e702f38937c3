/**
 * Several task messages in one queue message (core/transport/task-packing.ts): a stage of many
 * short tasks costs a send, a receive and a complete per pack, while each task is still claimed,
 * settled and dead-lettered on its own. A pack that comes back is split, so one poison task ends in
 * the dead-letter queue alone and its neighbours complete.
 */
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { packSize, packTaskMessages, unpackTaskBatch } from '../core/transport/task-packing';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineTask, parsePackedTaskMessage, parseTaskQueueMessage, type TaskQueueMessage } from '../models';
import { appRegistry } from './support/registry';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';

const db = useTestDatabase();

const task = (i: number, over: Partial<TaskQueueMessage> = {}): TaskQueueMessage => ({
  taskId: `${'b'.repeat(64)}-s1-t${i}`,
  jobId: 'b'.repeat(64),
  stage: 1,
  taskType: 'pack.work',
  attempt: 1,
  ...over,
});

test('the tasks of a parsed pack are not parsed again; any other task message is', () => {
  const parsed = parsePackedTaskMessage({ packed: [task(1), task(2)] });
  expect(parsed.success).toBe(true);
  const first = parsed.data!.packed[0]!;
  expect(parseTaskQueueMessage(first)).toEqual({ success: true, data: first });
  expect(parseTaskQueueMessage(first).data).toBe(first);
  // An equal object that did not come out of a pack is checked: a copy is returned, a bad one refused.
  const alone = task(3);
  expect(parseTaskQueueMessage(alone).data).not.toBe(alone);
  expect(parseTaskQueueMessage({ ...alone, attempt: 0 }).success).toBe(false);
  // A pack with one bad task is refused whole, and brands none of its tasks.
  const good = task(4);
  expect(parsePackedTaskMessage({ packed: [good, { ...task(5), stage: 0 }] }).success).toBe(false);
  expect(parseTaskQueueMessage(good).data).not.toBe(good);
});

test('pack size follows the dispatch: none below 64 tasks, then one per 32, at most the maximum (16 by default)', () => {
  expect([1, 10, 63, 64, 100, 200, 400, 1_000, 5_000].map((n) => packSize(n))).toEqual([1, 1, 1, 2, 3, 6, 12, 16, 16]);
  expect(packSize(5_000, 1)).toBe(1);
  expect(packSize(50_000, 64)).toBe(64);
  expect(packSize(50_000, 1_000)).toBe(64); // the schema's bound
});

test('packs keep order, never mix jobs, stages, task types or re-sends, and a remainder of one goes alone', () => {
  const messages = [
    ...Array.from({ length: 65 }, (_, i) => task(i)),
    task(130, { taskType: 'pack.other' }),
    ...Array.from({ length: 3 }, (_, i) => task(131 + i, { stage: 2 })),
  ];
  const out = packTaskMessages(messages);
  expect(out.flatMap((message) => message.tasks)).toEqual(messages);
  // 69 messages: packs of 2; the 65th task of the first group goes alone, as do the other type's.
  expect(out.map((message) => message.tasks.length)).toEqual([...Array.from({ length: 32 }, () => 2), 1, 1, 2, 1]);
  for (const message of out) {
    const kinds = new Set(message.tasks.map((t) => `${t.jobId}/${t.stage}/${t.taskType}/${t.resend ?? ''}`));
    expect(kinds.size).toBe(1);
    if (message.tasks.length === 1) expect(message.body).toEqual(message.tasks[0]);
  }
});

test('a pack received is one logical message per task; delivered again, it is split unhandled', () => {
  const [pack] = packTaskMessages(Array.from({ length: 200 }, (_, i) => task(i)));
  if (!pack) throw new Error('no pack');
  const held = {
    messageId: pack.messageId,
    body: pack.body,
    deliveryCount: 1,
    enqueuedTime: new Date(),
    applicationProperties: { jobId: 'j', stage: 1, packed: 3 },
  };
  const first = unpackTaskBatch([held]);
  expect(first.logical.map((m) => m.body)).toEqual(pack.tasks);
  expect(first.logical.map((m) => m.messageId)).toEqual(pack.tasks.map((t) => `${t.taskId}:a1`));
  expect(first.logical[0]?.applicationProperties).toEqual({ jobId: 'j', stage: 1, taskId: pack.tasks[0]?.taskId });
  const again = unpackTaskBatch([{ ...held, deliveryCount: 2 }]);
  expect(again.logical).toEqual([]);
  expect([...again.split]).toEqual([0]);
  // Not a well-formed pack: one message, which the engine finds malformed and dead-letters.
  const forged = unpackTaskBatch([{ ...held, body: { packed: [{ taskId: 'x' }] } }]);
  expect(forged.logical).toHaveLength(1);
  expect(forged.packs.size).toBe(0);
});

const ran = new Map<number, number>();
const work = defineTask({
  type: 'pack.work',
  parameters: z.object({ i: z.number().int() }),
  handler: ({ i }) => {
    ran.set(i, (ran.get(i) ?? 0) + 1);
    return i;
  },
});
const packedJob = defineJob({ type: 'pack.job', parameters: z.object({ n: z.number().int(), tag: z.string() }) })
  .stage({
    name: 'work',
    task: work,
    fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })),
    failurePolicy: { kind: 'tolerate', maxFailures: 1 },
  })
  .finalize(async ({ previous }) => (await previous.all()).length);

async function host(poisonTaskIndex: number | undefined, taskBatchSize = 64) {
  const transport = new InProcessTransport({ lockDurationMs: 60_000, maxDeliveryCount: 3 });
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const machine = await CoreMachine.create({ pool: db.pool, registry: appRegistry(packedJob), transport, logger });
  if (poisonTaskIndex !== undefined) {
    // The engine itself fails on one task's message, every time, with an error no retry fixes (a
    // bug, a host that dies): the batch it arrives in is given back, whatever else it holds.
    const process = machine.processTaskMessages.bind(machine);
    machine.processTaskMessages = async (bodies, metas) => {
      if (bodies.some((body) => (body as TaskQueueMessage).taskId.endsWith(`-t${poisonTaskIndex}`))) throw new Error('poison: this message breaks its host');
      return process(bodies, metas);
    };
  }
  const worker = new InProcessWorker(machine, transport, logger, { taskBatchSize, taskConcurrency: 2, jobConcurrency: 1 });
  return { machine, transport, worker, logs, stop: async () => (await worker.stop(), await transport.close()) };
}

test('a stage of 1,000 tasks goes out in packs that grow with its chunks and runs every task once; the queue sees 170 task messages, not 1,000', async () => {
  ran.clear();
  const h = await host(undefined);
  try {
    const { job } = await h.machine.submitJob('pack.job', { n: 1_000, tag: 'plain' });
    const done = await waitForJob(h.machine, job.jobId, 60_000);
    expect(done.status).toBe('COMPLETED');
    expect(done.result).toBe(1_000);
    expect([...ran.values()].every((count) => count === 1)).toBe(true);
    expect(ran.size).toBe(1_000);
    await h.worker.drain(); // the job ends before its last messages are completed
    // Chunks of 100, 100, 200, 400 and 200 tasks (core/engine/stage-creation.ts) in packs of 3, 3, 6, 12 and 6.
    const messages = [100 / 3, 100 / 3, 200 / 6, 400 / 12, 200 / 6].reduce((sum, n) => sum + Math.ceil(n), 0);
    expect(messages).toBe(170);
    expect(h.transport.tasks.stats.sent).toBe(messages);
    expect(h.transport.tasks.stats.completed).toBe(messages);
  } finally {
    await h.stop();
  }
});

test('one poison task inside a pack: its neighbours complete, it alone is dead-lettered and fails as one tolerated task', async () => {
  ran.clear();
  // Batches of one message: a batch the engine throws on is given back whole, so here only the
  // pack is (with several messages per batch, its batch-mates would share its deliveries).
  const h = await host(7, 1);
  try {
    const { job } = await h.machine.submitJob('pack.job', { n: 300, tag: 'poison' });
    const done = await waitForJob(h.machine, job.jobId, 60_000);
    expect(done.status).toBe('COMPLETED_WITH_ERRORS');
    expect(done.stages[0]).toMatchObject({ total: 300, completed: 299, failed: 1 });
    // Every neighbour ran exactly once; the poison task never reached its handler.
    expect(ran.size).toBe(299);
    expect([...ran.values()].every((count) => count === 1)).toBe(true);
    expect(ran.has(7)).toBe(false);
    const dead = h.transport.tasks.deadLetters;
    expect(dead.map((letter) => (letter.body as TaskQueueMessage).taskId)).toEqual([expect.stringMatching(/-t7$/)]);
    expect(dead[0]?.messageId).toMatch(/-t7:a1$/);
    const failed = await db.pool.query<{ task_index: number; error: { type: string } }>(
      "SELECT task_index, error FROM coremachine.tasks WHERE job_id = $1 AND status = 'FAILED'",
      [job.jobId],
    );
    expect(failed.rows).toEqual([expect.objectContaining({ task_index: 7 })]);
    // The pack holding it was split once, on its second delivery.
    expect(h.logs.filter((line) => line.includes('a pack delivered again is split')).length).toBe(1);
  } finally {
    await h.stop();
  }
});
