import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createTestDatabase, type TestDatabase } from './support/test-database';
import { startHarness, stuckJobs, waitForJob } from './support/harness';

// What applicationinsights v3 registers in production, with an in-memory exporter instead.
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(provider);
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await provider.shutdown();
  await db.drop();
});
afterEach(async () => {
  expect(await stuckJobs(db.pool)).toEqual([]);
});

const spansOf = (jobId: string): ReadableSpan[] => exporter.getFinishedSpans().filter((span) => span.attributes.jobId === jobId);

test('one trace per job spans submit, every stage and every task, across every queue hop, with ids on each span', async () => {
  const h = await startHarness(db.pool, { worker: { taskBatchSize: 4, taskConcurrency: 3 } });
  const [a, b] = await Promise.all([
    h.machine.submitJob('test.three_stages', { n: 5, tag: 'trace-a' }),
    h.machine.submitJob('test.three_stages', { n: 4, tag: 'trace-b' }),
  ]);
  expect((await waitForJob(h.machine, a.job.jobId)).status).toBe('COMPLETED');
  expect((await waitForJob(h.machine, b.job.jobId)).status).toBe('COMPLETED');
  await h.worker?.drain();

  for (const [job, n] of [
    [a.job, 5],
    [b.job, 4],
  ] as const) {
    const spans = spansOf(job.jobId);
    const names = spans.map((span) => span.name);
    expect(names.filter((name) => name === 'coremachine.submit')).toHaveLength(1);
    expect(names.filter((name) => name === 'coremachine.stage_start')).toHaveLength(3);
    expect(names.filter((name) => name === 'coremachine.task')).toHaveLength(3 * n);
    expect(new Set(spans.map((span) => span.spanContext().traceId)).size).toBe(1);
    const task = spans.find((span) => span.name === 'coremachine.task' && span.attributes.stage === 3);
    expect(task?.attributes).toMatchObject({ jobId: job.jobId, stage: 3, attempt: 1, taskType: 'test.value', outcome: 'completed' });
    expect(String(task?.attributes.taskId)).toMatch(new RegExp(`^${job.jobId}-s3-t\\d$`));
    // Every hop's parent is in the same trace: the submit span is the root.
    const root = spans.find((span) => span.name === 'coremachine.submit');
    expect(root?.parentSpanContext).toBeUndefined();
    const stageStarts = spans.filter((span) => span.name === 'coremachine.stage_start');
    expect(stageStarts.map((span) => span.attributes.stage).sort()).toEqual([1, 2, 3]);
    expect(stageStarts.flatMap((span) => span.events.map((event) => event.name))).toEqual(expect.arrayContaining(['CoreMachine.StageStarted']));
  }
  expect(spansOf(a.job.jobId)[0]?.spanContext().traceId).not.toBe(spansOf(b.job.jobId)[0]?.spanContext().traceId);
  await h.stop();
});

test('a failing task records the exception on its span, with the job and task ids', async () => {
  const h = await startHarness(db.pool);
  const { job } = await h.machine.submitJob('test.failing_job', { n: 3, failAt: 1 });
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('FAILED');
  await h.worker?.drain();
  const failed = spansOf(job.jobId).find((span) => span.name === 'coremachine.task' && span.attributes.taskId === `${job.jobId}-s1-t1`);
  expect(failed?.status).toMatchObject({ code: 2, message: 'TaskHandlerError: task 1 exploded' });
  expect(failed?.events.find((event) => event.name === 'exception')?.attributes).toMatchObject({
    'exception.type': 'TaskHandlerError',
    'exception.message': 'task 1 exploded',
  });
  expect(failed?.attributes.outcome).toBe('failed');
  await h.stop();
});
