import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

// int8 counts come back as strings by default; our counters fit comfortably in a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10));

export interface PoolOptions {
  /**
   * Called for every NEW connection (pg calls it during authentication), e.g. to hand over a
   * short-lived Microsoft Entra access token. The connection string must then carry no password.
   */
  password?: () => Promise<string>;
}

export function createPool(connectionString: string, max: number, options: PoolOptions = {}): pg.Pool {
  // pg lets a connection string's (empty) password override a `password` function given beside
  // it, so with a provider the string is parsed here and the provider set on the parsed config.
  const base: pg.PoolConfig = { max, application_name: 'coremachine' };
  const pool = new pg.Pool(options.password ? { ...base, ...parseIntoClientConfig(connectionString), password: options.password } : { ...base, connectionString });
  // An idle client losing its connection (server restart, pg_terminate_backend) must not crash
  // the process: the pool drops it and the next query gets a fresh one.
  pool.on('error', () => undefined);
  // pg-pool listens for errors on a checked-out client only once per query; a killed connection
  // can emit twice, and an unheard 'error' event crashes the process. The error itself still
  // reaches the caller through the query that fails, and the pool discards the client.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** Runs `work` in one transaction on one pooled connection; rolls back and rethrows on error. */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // A connection killed while checked out (pg_terminate_backend, failover) emits 'error' on the
  // client; unheard, that event would crash the process. It is kept here: the next query fails
  // with it, and the client is released as broken so the pool discards it.
  const onError = (error: Error) => {
    broken = error;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      // The connection is unusable; release it as broken so the pool discards it.
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    }
    throw error;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
