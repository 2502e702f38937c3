import type { TokenCredential } from '@azure/identity';

/**
 * Loaded only when telemetry is on: the SDK and the OpenTelemetry exporters behind it are most of
 * what a cold start evaluates, and an app without a connection string never uses them.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- deferred on purpose (see above) */
const applicationInsights = () => require('applicationinsights') as typeof import('applicationinsights');
const identity = () => require('@azure/identity') as typeof import('@azure/identity');
/* eslint-enable @typescript-eslint/no-require-imports */

export type TelemetryState = 'enabled' | 'disabled' | 'failed';

let state: TelemetryState | undefined;

/**
 * Registers Application Insights (applicationinsights v3: OpenTelemetry providers exporting to
 * Azure Monitor) when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Without it the engine's
 * OpenTelemetry calls stay no-ops. Telemetry must never take the app down: a setup failure is
 * reported on stderr and the app runs without it.
 */
export function startTelemetry(
  env: NodeJS.ProcessEnv = process.env,
  report: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): TelemetryState {
  if (state) return state;
  const connectionString = env.APPLICATIONINSIGHTS_CONNECTION_STRING?.trim();
  if (!connectionString) return (state = 'disabled');
  try {
    // Live Metrics stays off unless asked for (APPLICATIONINSIGHTS_CONFIGURATION_CONTENT=
    // '{"enableLiveMetrics":true}' overrides this): when its endpoint cannot be reached, its ping is
    // retried on timers that shutdownAzureMonitor cannot cancel, keeping a stopping process (a jest
    // worker, a CLI) alive for seconds after telemetry was shut down.
    const credential = ingestionCredential(env.APPLICATIONINSIGHTS_AUTHENTICATION_STRING);
    applicationInsights().useAzureMonitor({
      azureMonitorExporterOptions: { connectionString, ...(credential ? { credential } : {}) },
      enableLiveMetrics: false,
    });
    return (state = 'enabled');
  } catch (error) {
    report(JSON.stringify({ level: 'error', message: 'Application Insights could not start; running without telemetry', error: String(error) }));
    return (state = 'failed');
  }
}

/**
 * With local authentication off on the Application Insights resource (infra/modules/monitoring.bicep),
 * ingestion needs an Entra token. The Functions host reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING
 * itself, but the SDK's useAzureMonitor does not, so the worker's exporter gets the managed identity
 * here: `Authorization=AAD` for the system-assigned one, `;ClientId=<id>` for a user-assigned one
 * (learn.microsoft.com/azure/azure-functions/functions-app-settings#applicationinsights_authentication_string).
 */
export function ingestionCredential(setting: string | undefined): TokenCredential | undefined {
  const parts = new Map(
    (setting ?? '')
      .split(';')
      .map((part) => part.split('=').map((side) => side.trim()))
      .filter((pair): pair is [string, string] => pair.length === 2 && pair[0] !== '')
      .map(([key, value]) => [key.toLowerCase(), value]),
  );
  if (parts.get('authorization')?.toUpperCase() !== 'AAD') return undefined;
  const clientId = parts.get('clientid');
  const { ManagedIdentityCredential } = identity();
  return clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
}

/**
 * Flushes and stops the exporters. A flush that cannot reach the ingestion endpoint is reported,
 * not thrown: the app is shutting down and its work is already committed.
 */
export async function stopTelemetry(report: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Promise<void> {
  const wasEnabled = state === 'enabled';
  state = undefined;
  if (!wasEnabled) return;
  try {
    await applicationInsights().shutdownAzureMonitor();
  } catch (error) {
    report(JSON.stringify({ level: 'warn', message: 'Application Insights could not flush its last telemetry on shutdown', error: String(error) }));
  }
}
