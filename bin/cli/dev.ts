import type { CoreMachineConfig } from '../../core/config';
import { startLocalRuntime } from '../../core/local-runtime';
import type { Logger } from '../../core/logger';
import type { Registry } from '../../core/registry';
import { startTelemetry, stopTelemetry } from '../../functions/telemetry-setup';
import { startDevServer } from './dev-server';
import { UsageError, type CliIo } from './io';
import { parsePort, type LocalArgs } from './local-args';
import { isLoopbackAddress } from './request-guard';
import { schemaLine } from './schema-line';
import { aborted } from './shutdown';

/**
 * `coremachine dev`: the HTTP API on 127.0.0.1 (unless told otherwise) with in-process workers,
 * until SIGINT/SIGTERM. Every step that started something stops it again on the way out, whether
 * the next step failed or the user pressed Ctrl-C.
 */
export async function runDev(config: CoreMachineConfig, registry: Registry, logger: Logger, args: LocalArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const portFlag = typeof args.values.port === 'string' ? args.values.port : undefined;
  const port = parsePort(portFlag ?? io.env.PORT ?? '7071', portFlag === undefined && io.env.PORT !== undefined ? 'PORT' : '--port');
  const host = typeof args.values.host === 'string' ? args.values.host : '127.0.0.1';
  if (host.trim() === '') throw new UsageError('--host must name an address, e.g. 127.0.0.1 or 0.0.0.0');
  const functionKey = config.functionKey;
  const telemetry = startTelemetry();
  try {
    const runtime = await startLocalRuntime(config, registry, logger, { migrate: args.values['no-migrate'] !== true });
    try {
      const server = await startDevServer(runtime, logger, { port, host, functionKey });
      // What the coremachine-events topic carries in Azure, logged here so a developer sees it.
      runtime.machine.events.subscribe((event, meta) => {
        logger.info('job event', {
          type: event.type,
          jobId: event.jobId,
          jobType: event.jobType,
          status: event.status,
          stage: event.stage,
          messageId: meta.messageId,
        });
      });
      try {
        io.out(
          `CoreMachine dev server on ${server.url}/api (${runtime.database.embedded ? 'embedded PostgreSQL' : 'DATABASE_URL'}, ${schemaLine(runtime.database)}, in-process transport)\n` +
            `  dashboard: ${server.url}/api/dashboard${functionKey ? '?code=<COREMACHINE_FUNCTION_KEY>' : ''}\n  job types: ${registry.jobTypes().join(', ')}\n  Application Insights: ${telemetry}\n`,
        );
        if (!isLoopbackAddress(host)) {
          io.err(`warning: bound to ${host}, not a loopback address: any Host name is served and anyone who can reach this machine can call the API\n`);
        }
        if (!functionKey) {
          io.err(
            'warning: no COREMACHINE_FUNCTION_KEY set: every route is open to whoever can reach this server ' +
              '(cross-site browser requests and foreign Host names are still refused); set a key to require it\n',
          );
        }
        await aborted(signal);
        io.out(`shutting down: running tasks get ${config.shutdownGraceMs / 1000} s to finish, then are given back\n`);
      } finally {
        await server.close();
      }
    } finally {
      await runtime.close(config.shutdownGraceMs);
    }
  } finally {
    await stopTelemetry();
  }
  return 0;
}
