import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { createLogger } from '../core/logger';
import { chainOnComplete } from '../examples/chain-on-complete';
import { defineJob, defineTask, jobEventMessageId, type JobEvent } from '../models';
import { useHarnessPerTest, waitForJob } from './support/harness';
import { appRegistry } from './support/registry';

// Job events out: every terminal transition and every completed stage, through the outbox.
const { db, h, restart } = useHarnessPerTest();

function collect(machine: CoreMachine): { events: JobEvent[]; ids: string[] } {
  const seen = { events: [] as JobEvent[], ids: [] as string[] };
  machine.events.subscribe((event, meta) => {
    seen.events.push(event);
    seen.ids.push(meta.messageId);
  });
  return seen;
}

async function outboxRows(kind: string): Promise<number> {
  return (await db().pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.outbox WHERE kind = $1', [kind])).rows[0]?.n ?? -1;
}

test('a completed job publishes each stage completion, then JobCompleted with its result, once each and in order', async () => {
  const seen = collect(h().machine);
  const { job } = await h().machine.submitJob('test.three_stages', { n: 4 });
  const done = await waitForJob(h().machine, job.jobId);
  await h().worker?.drain();
  expect(done.status).toBe('COMPLETED');
  const mine = seen.events.filter((event) => event.jobId === job.jobId);
  expect(mine.map((event) => `${event.type}:${event.stage}`)).toEqual(['StageCompleted:1', 'StageCompleted:2', 'StageCompleted:3', 'JobCompleted:3']);
  expect(mine[0]).toMatchObject({ jobType: 'test.three_stages', status: 'COMPLETED' });
  expect(mine[3]).toMatchObject({ status: 'COMPLETED', result: done.result });
  expect(mine[3]?.error).toBeUndefined();
  expect(new Set(seen.ids).size).toBe(seen.ids.length);
  expect(seen.ids[3]).toBe(jobEventMessageId(mine[3] as JobEvent));
  expect(await outboxRows('event')).toBe(0);
});

test('a failed job publishes JobFailed with its error; a cancelled one JobCancelled', async () => {
  const seen = collect(h().machine);
  const { job: failing } = await h().machine.submitJob('test.failing_job', { n: 3, failAt: 1 });
  expect((await waitForJob(h().machine, failing.jobId)).status).toBe('FAILED');
  await h().worker?.drain();
  const failed = seen.events.find((event) => event.jobId === failing.jobId && event.type === 'JobFailed');
  expect(failed).toMatchObject({ status: 'FAILED', stage: 1, error: { type: 'TaskHandlerError', stage: 1 } });
  expect(failed?.error?.message).toContain('task 1 exploded');

  // No workers: the job stays QUEUED until it is cancelled.
  const idle = await restart({ worker: false });
  const idleSeen = collect(idle.machine);
  const { job: queued } = await idle.machine.submitJob('test.three_stages', { n: 2, tag: 'cancel-me' });
  await idle.machine.cancelJob(queued.jobId);
  expect(idleSeen.events.filter((event) => event.jobId === queued.jobId).map((event) => event.type)).toEqual(['JobCancelled']);
});

test('a publish that fails after commit leaves the event in the outbox; the janitor publishes it once', async () => {
  let failNext = true;
  const flaky = await restart({
    wrapTransport: (inner) => ({
      name: 'flaky-events',
      durable: false,
      sendReceipt: (queue, receipt, properties) => inner.sendReceipt(queue, receipt, properties),
      close: () => inner.close(),
      sendJobMessages: (m) => inner.sendJobMessages(m),
      sendTaskMessages: (m) => inner.sendTaskMessages(m),
      scheduleTaskMessages: (m, at) => inner.scheduleTaskMessages(m, at),
      publishEvents: (events) => {
        if (failNext && events.some((event) => event.type === 'JobCompleted')) {
          failNext = false;
          return Promise.reject(new Error('events topic unreachable'));
        }
        return inner.publishEvents(events);
      },
    }),
  });
  const seen = { events: [] as JobEvent[] };
  flaky.transport.events.subscribe((event) => {
    seen.events.push(event);
  });
  const { job } = await flaky.machine.submitJob('test.three_stages', { n: 2 });
  expect((await waitForJob(flaky.machine, job.jobId)).status).toBe('COMPLETED');
  await flaky.worker?.drain();
  // The transitions committed; the events of that unit of work (the last stage's completion and
  // JobCompleted) did not go out and wait in the outbox.
  expect(seen.events.filter((event) => event.type === 'JobCompleted')).toHaveLength(0);
  expect(await outboxRows('event')).toBe(2);
  await flaky.machine.sweep({ outboxAgeMs: 0 });
  const delivered = seen.events.filter((event) => event.jobId === job.jobId).map((event) => `${event.type}:${event.stage}`);
  expect(delivered.sort()).toEqual(['JobCompleted:3', 'StageCompleted:1', 'StageCompleted:2', 'StageCompleted:3']);
  expect(await outboxRows('event')).toBe(0);
});

test('a transition rolled back by a transient fault publishes nothing: exactly one JobCompleted', async () => {
  let faults = 1;
  const step = defineTask({ type: 'test.events.step', parameters: z.object({ i: z.number().int() }), handler: ({ i }) => Promise.resolve({ i }) });
  const job = defineJob({ type: 'test.events.flaky_finalize', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'steps', task: step, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(({ previous }) => {
      if (faults-- > 0) return Promise.reject(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }));
      return Promise.resolve({ steps: previous.count });
    });
  const transport = new InProcessTransport();
  const logger = createLogger('silent');
  const machine = await CoreMachine.create({ pool: db().pool, registry: appRegistry(job), transport, logger });
  const worker = new InProcessWorker(machine, transport, logger, { taskBatchSize: 8, taskConcurrency: 2, jobConcurrency: 1 });
  const seen = collect(machine);
  try {
    const { job: submitted } = await machine.submitJob('test.events.flaky_finalize', { n: 3 });
    const done = await waitForJob(machine, submitted.jobId);
    await worker.drain();
    expect(done.status).toBe('COMPLETED');
    expect(faults).toBeLessThan(0);
    const completed = seen.events.filter((event) => event.jobId === submitted.jobId && event.type === 'JobCompleted');
    expect(completed).toHaveLength(1);
    expect(completed[0]?.result).toEqual({ steps: 3 });
  } finally {
    await worker.stop();
    await transport.close();
  }
});

test('the example consumer chains word_frequencies after hello_world, once even when the event is delivered twice', async () => {
  chainOnComplete(h().machine);
  const { job } = await h().machine.submitJob('hello_world', { n: 2 });
  expect((await waitForJob(h().machine, job.jobId)).status).toBe('COMPLETED');
  const chained = async () => (await h().machine.listJobs({ jobType: 'word_frequencies' })).jobs.filter((j) => j.idempotencyKey === `after:${job.jobId}`);
  for (let i = 0; i < 200 && (await chained()).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 25));
  const [next] = await chained();
  expect(next).toBeDefined();
  expect((await waitForJob(h().machine, next?.jobId ?? '')).status).toBe('COMPLETED');
  // Redelivery (at-least-once) makes the same job, not a second one.
  const event: JobEvent = { type: 'JobCompleted', jobId: job.jobId, jobType: 'hello_world', status: 'COMPLETED', stage: 2, at: new Date().toISOString() };
  await h().transport.events.publish([event]);
  expect(await chained()).toHaveLength(1);
  await h().worker?.drain();
});

test('with the Service Bus transport machine.events says to subscribe to the topic', () => {
  const fake = Object.create(CoreMachine.prototype) as CoreMachine;
  Object.assign(fake, { transport: { name: 'service-bus' } });
  expect(() => fake.events).toThrow(/coremachine-events topic/);
});
