import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, metrics, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { logs, SeverityNumber } from '@opentelemetry/api-logs';
import { errorToShape } from './errors';

/**
 * Tracing, events and metrics through the vendor-neutral OpenTelemetry API. Without a registered
 * provider (no APPLICATIONINSIGHTS_CONNECTION_STRING) every call is a no-op. With Application
 * Insights (applicationinsights v3 registers the providers), spans become requests/dependencies,
 * custom events land in customEvents, histograms in customMetrics, recorded exceptions in exceptions.
 */
/**
 * The tracer, fetched once per registered provider: without one, every `getTracer` made a new
 * proxy, once per task. Keyed by the provider so a provider registered (or removed) later is used.
 */
let tracerOf: { provider: ReturnType<typeof trace.getTracerProvider>; tracer: ReturnType<typeof trace.getTracer> } | undefined;
const tracer = () => {
  const provider = trace.getTracerProvider();
  if (tracerOf?.provider !== provider) tracerOf = { provider, tracer: provider.getTracer('coremachine') };
  return tracerOf.tracer;
};
const meter = () => metrics.getMeter('coremachine');
const eventLogger = () => logs.getLogger('coremachine');

let taskDuration: ReturnType<ReturnType<typeof meter>['createHistogram']> | undefined;
let queueWait: typeof taskDuration;
let stageDuration: typeof taskDuration;

function histograms() {
  taskDuration ??= meter().createHistogram('coremachine.task.duration', { unit: 'ms', description: 'handler time of one task attempt' });
  queueWait ??= meter().createHistogram('coremachine.task.queue_wait', { unit: 'ms', description: 'message enqueued → task started' });
  stageDuration ??= meter().createHistogram('coremachine.stage.duration', { unit: 'ms', description: 'stage started → stage completed' });
  return { taskDuration, queueWait, stageDuration };
}

/** The context a W3C traceparent names, so one trace follows a job across every queue hop. */
export function contextFromTraceparent(traceparent: string | undefined): Context {
  if (!traceparent) return context.active();
  return propagation.extract(ROOT_CONTEXT, { traceparent });
}

/** The active span as a W3C traceparent, to carry in an outgoing message's properties. */
export function currentTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** The active trace context as message properties (W3C traceparent), when there is one. */
export function traceProperties(): { traceparent?: string } {
  const traceparent = currentTraceparent();
  return traceparent ? { traceparent } : {};
}

/**
 * Starts a span without entering it. `within` is the context its work runs in, or undefined
 * when there is nothing to enter: a span that does not record and carries no trace on (every
 * span while telemetry is off, unless a message brought a traceparent). Skipping the context then
 * spares a context copy and a callback per task. The caller ends the span.
 */
export function startSpan(
  name: string,
  attributes: Attributes,
  parent: Context,
  kind: SpanKind = SpanKind.CONSUMER,
): { span: Span; within: Context | undefined } {
  const span = tracer().startSpan(name, { kind, attributes }, parent);
  const carriesOn = span.isRecording() || trace.isSpanContextValid(span.spanContext());
  return { span, within: carriesOn ? trace.setSpan(parent, span) : undefined };
}

/** Runs `work` in a span's context (`within` from startSpan); with none, runs it as it is. */
export function runWithin<T>(within: Context | undefined, work: () => T): T {
  return within ? context.with(within, work) : work();
}

/**
 * Runs `work` in a span. Errors are recorded on the span (Application Insights: exceptions, with
 * the span's ids) and rethrown unchanged.
 */
export async function inSpan<T>(
  name: string,
  attributes: Attributes,
  parent: Context,
  work: (span: Span) => Promise<T>,
  kind: SpanKind = SpanKind.CONSUMER,
): Promise<T> {
  const { span, within } = startSpan(name, attributes, parent, kind);
  try {
    return await runWithin(within, () => work(span));
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}

export function recordFailure(span: Span, error: unknown): void {
  const shape = errorToShape(error);
  span.recordException({ name: shape.type, message: shape.message });
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${shape.type}: ${shape.message}` });
}

/** A job or stage transition as a custom event (customEvents in Application Insights). */
export function emitEvent(name: string, attributes: Attributes): void {
  trace.getActiveSpan()?.addEvent(name, attributes);
  eventLogger().emit({
    severityNumber: SeverityNumber.INFO,
    body: name,
    attributes: { 'microsoft.custom_event.name': name, ...attributes },
  });
}

const TASK_LOG_SEVERITY: Readonly<Record<'debug' | 'info' | 'warn' | 'error', SeverityNumber>> = {
  debug: SeverityNumber.DEBUG,
  info: SeverityNumber.INFO,
  warn: SeverityNumber.WARN,
  error: SeverityNumber.ERROR,
};

/**
 * A handler's log line (ctx.log) as a log record in the active context: Application Insights files
 * it under traces, in the operation of the task's span. Without a logger provider it goes nowhere.
 */
export function emitTaskLog(level: 'debug' | 'info' | 'warn' | 'error', message: string, attributes: Attributes): void {
  eventLogger().emit({ severityNumber: TASK_LOG_SEVERITY[level], severityText: level.toUpperCase(), body: message, attributes, context: context.active() });
}

export function recordTaskDuration(ms: number, attributes: Attributes): void {
  histograms().taskDuration?.record(ms, attributes);
}

export function recordQueueWait(ms: number, attributes: Attributes): void {
  if (ms >= 0) histograms().queueWait?.record(ms, attributes);
}

export function recordStageDuration(ms: number, attributes: Attributes): void {
  histograms().stageDuration?.record(ms, attributes);
}

export { SpanKind };

/**
 * Adds the span attributes a message contributes (only those the transport gave) to `attributes`.
 * Assigned, not spread: this runs once per task, and object spreads were a visible share of it.
 */
export function withMessageAttributes<T extends Record<string, string | number>>(
  attributes: T,
  meta: { messageId?: string | undefined; deliveryCount?: number | undefined },
): T & { messageId?: string; deliveryCount?: number } {
  const out: T & { messageId?: string; deliveryCount?: number } = attributes;
  if (meta.messageId) out.messageId = meta.messageId;
  if (meta.deliveryCount) out.deliveryCount = meta.deliveryCount;
  return out;
}
