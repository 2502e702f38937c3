import { shutdownAzureMonitor, useAzureMonitor } from 'applicationinsights';

export type TelemetryState = 'enabled' | 'disabled' | 'failed';

let state: TelemetryState | undefined;

/**
 * Registers Application Insights (applicationinsights v3: OpenTelemetry providers exporting to
 * Azure Monitor) when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Without it the engine's
 * OpenTelemetry calls stay no-ops. Telemetry must never take the app down: a setup failure is
 * reported on stderr and the app runs without it.
 */
export function startTelemetry(env: NodeJS.ProcessEnv = process.env, report: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): TelemetryState {
  if (state) return state;
  const connectionString = env.APPLICATIONINSIGHTS_CONNECTION_STRING?.trim();
  if (!connectionString) return (state = 'disabled');
  try {
    // Live Metrics stays off unless asked for (APPLICATIONINSIGHTS_CONFIGURATION_CONTENT=
    // '{"enableLiveMetrics":true}' overrides this): when its endpoint cannot be reached, its ping is
    // retried on timers that shutdownAzureMonitor cannot cancel, keeping a stopping process (a jest
    // worker, a CLI) alive for seconds after telemetry was shut down.
    useAzureMonitor({ azureMonitorExporterOptions: { connectionString }, enableLiveMetrics: false });
    return (state = 'enabled');
  } catch (error) {
    report(JSON.stringify({ level: 'error', message: 'Application Insights could not start; running without telemetry', error: String(error) }));
    return (state = 'failed');
  }
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
    await shutdownAzureMonitor();
  } catch (error) {
    report(JSON.stringify({ level: 'warn', message: 'Application Insights could not flush its last telemetry on shutdown', error: String(error) }));
  }
}
