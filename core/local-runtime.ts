import type { CoreMachineConfig } from './config';
import { openDatabase, type Database } from './database';
import { CoreMachine } from './engine/core-machine';
import { createPayloads } from './payloads/payload-settings';
import type { Logger } from './logger';
import type { Registry } from './registry';
import { InProcessTransport } from './transport/in-process-transport';
import { InProcessWorker } from './worker';

export interface LocalRuntime {
  database: Database;
  machine: CoreMachine;
  transport: InProcessTransport;
  worker: InProcessWorker;
  /** Stops the workers (with `graceMs`, draining running handlers first: see InProcessWorker.stop), then the database. */
  close(graceMs?: number): Promise<void>;
}

export interface LocalRuntimeOptions {
  /** Apply pending migrations on start (default: only on the embedded PostgreSQL). */
  migrate?: boolean;
  /** The schedules' clock (default: the wall clock); coremachine/testing moves it forward. */
  now?: () => Date;
}

/** Database + engine + in-process transport + workers: what `demo` and `dev` run. */
export async function startLocalRuntime(
  config: CoreMachineConfig,
  registry: Registry,
  logger: Logger,
  options: LocalRuntimeOptions = {},
): Promise<LocalRuntime> {
  const database = await openDatabase(config, logger, options.migrate === undefined ? {} : { migrate: options.migrate });
  // Whatever fails from here on, the database (and the embedded server with it) is closed again.
  try {
    const transport = new InProcessTransport({ maxPackedTasks: config.maxPackedTasks });
    const machine = await CoreMachine.create({
      pool: database.pool,
      registry,
      transport,
      logger,
      retentionDays: config.retentionDays,
      schedules: { catchUpSeconds: config.scheduleCatchUpSeconds, ...(options.now ? { now: options.now } : {}) },
      // On the embedded PostgreSQL without a blob store configured, large values go to a folder beside it.
      payloads: createPayloads(config.payloads, { dataDir: config.dataDir, embedded: database.embedded }),
    });
    // What a previous process committed but never sent, or held only in its memory, goes out now.
    await machine.resumeAfterStart({ ...config.janitor });
    const worker = new InProcessWorker(machine, transport, logger, {
      taskBatchSize: config.taskBatchSize,
      taskConcurrency: config.taskConcurrency,
      jobConcurrency: config.jobConcurrency,
      janitorIntervalMs: config.janitorIntervalMs,
      janitor: config.janitor,
    });
    return {
      database,
      machine,
      transport,
      worker,
      close: async (graceMs?: number) => {
        try {
          await worker.stop(graceMs);
          await transport.close();
        } finally {
          await database.close();
        }
      },
    };
  } catch (error) {
    await database.close();
    throw error;
  }
}
