import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { contextFromTraceparent, currentTraceparent, runWithin, startSpan } from '../core/telemetry';

// Without a tracer provider no span records, and a task's span enters no context (that was a
// context copy and a callback per task). A trace a message brought is still carried on, so a
// propagator registered on its own still passes the traceparent to the messages a task sends.
// No tracer provider is registered in this file (jest gives each file its own globals).

test('telemetry off: a span without a trace to carry on enters no context, and work runs as it is', async () => {
  const { span, within } = startSpan('coremachine.task', { taskId: 't' }, context.active());
  expect(span.isRecording()).toBe(false);
  expect(within).toBeUndefined();
  expect(await runWithin(within, () => Promise.resolve(42))).toBe(42);
  span.end();
});

test('telemetry off: a traceparent a message brought is carried on to what the task sends', async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  try {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const { span, within } = startSpan('coremachine.task', { taskId: 't' }, contextFromTraceparent(traceparent));
    expect(span.isRecording()).toBe(false);
    expect(within).toBeDefined();
    const sent = await runWithin(within, async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return currentTraceparent();
    });
    expect(sent).toBe(traceparent);
    span.end();
  } finally {
    propagation.disable();
    context.disable();
    trace.disable();
  }
});
