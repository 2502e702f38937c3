import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * Databases made for one test kit (coremachine/testing) on a server the caller may create databases
 * on, and dropped with it: each kit starts from an empty schema, whatever other tests left behind.
 */
export interface ScratchDatabase {
  /** The new database's connection string (the server's, with its name). */
  url: string;
  name: string;
  drop(): Promise<void>;
}

async function onServer<T>(serverUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function createScratchDatabase(serverUrl: string, prefix = 'coremachine_test'): Promise<ScratchDatabase> {
  // Lowercase letters, digits and _ only: the name is an identifier, not a parameter.
  const name = `${prefix}_${process.pid}_${randomBytes(5).toString('hex')}`;
  await onServer(serverUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      // FORCE: connections a test left open (a pool it made itself) do not keep the database alive.
      await onServer(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}
