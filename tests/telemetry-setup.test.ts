import { trace } from '@opentelemetry/api';
import { ManagedIdentityCredential } from '@azure/identity';
import { ingestionCredential, startTelemetry, stopTelemetry } from '../functions/telemetry-setup';

// Statsbeat (the SDK's own usage telemetry) would keep exporting to the unreachable test endpoint on a
// timer after the test ends.
process.env.APPLICATION_INSIGHTS_NO_STATSBEAT = 'true';

const shutdownReports: string[] = [];
afterEach(async () => {
  await stopTelemetry((line) => shutdownReports.push(line));
});

test('without a connection string telemetry is a no-op: nothing registered, spans do not record', () => {
  expect(startTelemetry({})).toBe('disabled');
  const span = trace.getTracer('probe').startSpan('probe');
  expect(span.isRecording()).toBe(false);
  span.end();
});

test('with a connection string Application Insights registers OpenTelemetry providers that record spans', async () => {
  // Loopback endpoints nobody listens on: exports fail quietly, the app keeps running, nothing leaves the machine.
  const lines: string[] = [];
  const state = startTelemetry(
    {
      APPLICATIONINSIGHTS_CONNECTION_STRING:
        'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/',
    },
    (line) => lines.push(line),
  );
  expect(state).toBe('enabled');
  let recording = false;
  for (let i = 0; i < 50 && !recording; i++) {
    const span = trace.getTracer('probe').startSpan('probe');
    recording = span.isRecording();
    span.end();
    if (!recording) await new Promise((r) => setTimeout(r, 100));
  }
  expect(recording).toBe(true);
  expect(lines).toEqual([]);
});

test('with APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD the exporter authenticates with the managed identity (local auth is off in Azure)', () => {
  expect(ingestionCredential(undefined)).toBeUndefined();
  expect(ingestionCredential('')).toBeUndefined();
  expect(ingestionCredential('Authorization=Key')).toBeUndefined();
  expect(ingestionCredential('Authorization=AAD')).toBeInstanceOf(ManagedIdentityCredential);
  expect(ingestionCredential(' authorization = aad ; ClientId = 00000000-0000-0000-0000-000000000001 ')).toBeInstanceOf(ManagedIdentityCredential);
});
