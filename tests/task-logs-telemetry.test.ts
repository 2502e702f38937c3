import { context, trace } from '@opentelemetry/api';
import { logs } from '@opentelemetry/api-logs';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { defineJob, defineTask } from '../models';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { appRegistry } from './support/registry';

// A handler's ctx.log lines reach Application Insights as log records (traces) in the task's
// operation: the providers applicationinsights v3 registers, with in-memory exporters instead.
const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
trace.setGlobalTracerProvider(tracerProvider);
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const records = new InMemoryLogRecordExporter();
const loggerProvider = new LoggerProvider({ processors: [new SimpleLogRecordProcessor(records)] });
logs.setGlobalLoggerProvider(loggerProvider);

const db = useTestDatabase();
afterAll(async () => {
  await Promise.all([tracerProvider.shutdown(), loggerProvider.shutdown()]);
});

const job = defineJob({ type: 'logs_telemetry.job', parameters: z.object({}) })
  .stage({
    name: 'talk',
    task: defineTask({
      type: 'logs_telemetry.talk',
      parameters: z.object({}),
      handler: async (_parameters, ctx) => {
        ctx.log('warn', 'disk nearly full', { freeMb: 12 });
        // After an await, still in the task's operation.
        await new Promise((resolve) => setImmediate(resolve));
        ctx.log('debug', 'second line');
        return {};
      },
    }),
    fanOut: () => [{}],
  })
  .finalize(() => ({}));

test('ctx.log lines are log records in the task span, with severity, ids and fields', async () => {
  const transport = new InProcessTransport();
  const machine = await CoreMachine.create({ pool: db.pool, registry: appRegistry(job), transport, logger: captureLogger([]) });
  const { job: submitted } = await machine.submitJob(job.type, {});
  await machine.processJobMessage(transport.jobs.receive(1)[0]?.body);
  await machine.processTaskMessages(transport.tasks.receive(1).map((message) => message.body));
  const taskId = `${submitted.jobId}-s1-t0`;
  const taskSpan = spans.getFinishedSpans().find((span) => span.name === 'coremachine.task' && span.attributes.taskId === taskId);
  expect(taskSpan).toBeDefined();
  const lines = records.getFinishedLogRecords().filter((record) => record.attributes.taskId === taskId);
  expect(lines.map((record) => [record.body, record.severityText, record.severityNumber])).toEqual([
    ['disk nearly full', 'WARN', 13],
    ['second line', 'DEBUG', 5],
  ]);
  expect(lines[0]?.attributes).toEqual({ jobId: submitted.jobId, taskId, stage: 1, attempt: 1, taskType: 'logs_telemetry.talk', fields: '{"freeMb":12}' });
  for (const record of lines) {
    expect(record.spanContext?.traceId).toBe(taskSpan?.spanContext().traceId);
    expect(record.spanContext?.spanId).toBe(taskSpan?.spanContext().spanId);
  }
  expect((await waitForJob(machine, submitted.jobId)).status).toBe('COMPLETED');
  await transport.close();
});
