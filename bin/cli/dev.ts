import type { CoreMachineConfig } from '../../core/config';
import { startLocalRuntime } from '../../core/local-runtime';
import type { Logger } from '../../core/logger';
import type { Registry } from '../../core/registry';
import { startDevServer } from './dev-server';
import { startTelemetry, stopTelemetry } from '../../functions/telemetry-setup';
import { flagValue } from './flags';

/** `coremachine dev`: the HTTP API on 127.0.0.1 (unless told otherwise) with in-process workers. */
export async function runDev(config: CoreMachineConfig, registry: Registry, logger: Logger, args: string[]): Promise<number> {
  const port = Number(flagValue(args, '--port') ?? process.env.PORT ?? 7071);
  const host = flagValue(args, '--host') ?? '127.0.0.1';
  const telemetry = startTelemetry();
  const runtime = await startLocalRuntime(config, registry, logger);
  const server = await startDevServer(runtime, logger, { port, host, functionKey: process.env.COREMACHINE_FUNCTION_KEY });
  process.stdout.write(
    `CoreMachine dev server on ${server.url}/api (${runtime.database.embedded ? 'embedded PostgreSQL' : 'DATABASE_URL'}, in-process transport)\n` +
      `  dashboard: ${server.url}/api/dashboard${process.env.COREMACHINE_FUNCTION_KEY ? '?code=<COREMACHINE_FUNCTION_KEY>' : ''}\n  job types: ${registry.jobTypes().join(', ')}\n  Application Insights: ${telemetry}\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stdout.write('shutting down: finishing in-flight work\n');
  await server.close();
  await runtime.close();
  await stopTelemetry();
  return 0;
}
