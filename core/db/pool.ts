import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { preparedStatementsFromEnv, type CoreMachineConfig } from '../config';
import { SingleStatementError } from '../errors';
import { DEFAULT_TRANSIENT_RETRY, retryTransient, type TransientRetryPolicy } from './retry-transient';

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

// int8 counts come back as strings by default; our counters fit comfortably in a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10));

/** How a pool is built. An options object so new settings (e.g. a token provider) add a field, not a parameter. */
export interface PoolOptions {
  max: number;
  /**
   * How long a query waits for a free connection (or for a new one to open) before failing with
   * a transient error. Without it pg-pool waits forever, and a starved instance hangs instead of
   * giving its message back.
   */
  connectionTimeoutMillis?: number;
  /**
   * Named (server-side) prepared statements. Off behind a pooler that cannot track them
   * (PgBouncer in transaction mode before 1.21, or without max_prepared_statements): every
   * `name` is stripped and statements are parsed each time. Default: COREMACHINE_PREPARED_STATEMENTS.
   */
  preparedStatements?: boolean;
  /**
   * Called for every NEW connection (pg calls it during authentication), e.g. to hand over a
   * short-lived Microsoft Entra access token. The connection string must then carry no password.
   */
  password?: () => Promise<string>;
}

export const DEFAULT_CONNECTION_TIMEOUT_MS = 10_000;

/** The pool settings of a loaded configuration (PG_POOL_MAX, PG_CONNECT_TIMEOUT_MS, COREMACHINE_PREPARED_STATEMENTS). */
export function poolOptions(
  config: Pick<CoreMachineConfig, 'poolMax' | 'connectTimeoutMs' | 'preparedStatements'>,
  extra: Pick<PoolOptions, 'password'> = {},
): PoolOptions {
  return { max: config.poolMax, connectionTimeoutMillis: config.connectTimeoutMs, preparedStatements: config.preparedStatements, ...extra };
}

export function createPool(connectionString: string, options: PoolOptions | number): pg.Pool {
  const {
    max,
    connectionTimeoutMillis = DEFAULT_CONNECTION_TIMEOUT_MS,
    preparedStatements = preparedStatementsFromEnv(),
    password,
  } = typeof options === 'number' ? ({ max: options } as PoolOptions) : options;
  const base: pg.PoolConfig = { max, connectionTimeoutMillis, application_name: 'coremachine' };
  // pg lets a connection string's (empty) password override a `password` function given beside
  // it, so with a provider the string is parsed here and the provider set on the parsed config.
  const pool = new pg.Pool(password ? { ...base, ...parseIntoClientConfig(connectionString), password } : { ...base, connectionString });
  // An idle client losing its connection (server restart, pg_terminate_backend) must not crash
  // the process: the pool drops it and the next query gets a fresh one.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    // pg-pool listens for errors on a checked-out client only once per query; a killed connection
    // can emit twice, and an unheard 'error' event crashes the process. The error itself still
    // reaches the caller through the query that fails, and the pool discards the client.
    client.on('error', () => undefined);
    if (!preparedStatements) withoutStatementNames(client);
  });
  return pool;
}

/**
 * Every query config loses its `name`, so pg uses the unnamed statement, which lives only until
 * the next one: nothing outlives the transaction on the server connection a pooler lent us.
 */
function withoutStatementNames(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  const strip = (first: unknown, ...rest: unknown[]): unknown => {
    if (first !== null && typeof first === 'object' && 'name' in first && 'text' in first) {
      const { name: _name, ...unnamed } = first as { name: unknown };
      return query(unnamed, ...rest);
    }
    return query(first, ...rest);
  };
  client.query = strip as typeof client.query;
}

export interface TransactionOptions {
  /** Retries of the whole transaction on a transient fault; `false` for none. */
  retry?: TransientRetryPolicy | false;
  /**
   * The work sends at most one statement: it runs as its own implicit transaction (one statement
   * is atomic), without BEGIN and COMMIT, two round trips fewer. A second statement would not be
   * atomic with the first, so it throws SingleStatementError before it is sent.
   */
  singleStatement?: boolean;
}

/**
 * Runs `work` in one transaction on one pooled connection; rolls back and rethrows on error.
 * A transient fault (connection refused or killed, too many connections, serialization failure,
 * deadlock) reruns the whole transaction a bounded number of times with jitter, so `work` must be
 * safe to run again — every engine transaction is a compare-and-set, so a rerun after a COMMIT
 * whose reply was lost finds the work done and changes nothing twice.
 */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const retry = options.retry ?? DEFAULT_TRANSIENT_RETRY;
  const once = options.singleStatement ? singleStatementOnce : transactionOnce;
  if (retry === false) return once(pool, work);
  return retryTransient(() => once(pool, work), retry);
}

/** A work of one statement: that statement's implicit transaction is the transaction. */
function singleStatementOnce<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, (client) => {
    let sent = 0;
    // The work sees the client with a guarded query; everything else is the client's own.
    const guarded = Object.create(client) as pg.PoolClient;
    guarded.query = ((...args: Parameters<pg.PoolClient['query']>) => {
      sent++;
      if (sent > 1) return Promise.reject(new SingleStatementError());
      return (client.query as (...a: unknown[]) => unknown)(...args);
    }) as pg.PoolClient['query'];
    return work(guarded);
  });
}

function transactionOnce<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client, markBroken) => {
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
        markBroken(rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError)));
      }
      throw error;
    }
  });
}

/**
 * A pooled connection for one unit of work, released when `use` ends. A connection killed while
 * checked out (pg_terminate_backend, failover) emits 'error' on the client; unheard, that event
 * would crash the process. It is kept here: the next query fails with it, and the client is
 * released as broken so the pool discards it (as it is when `use` marks it broken).
 */
async function withClient<T>(pool: pg.Pool, use: (client: pg.PoolClient, markBroken: (error: Error) => void) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const markBroken = (error: Error) => {
    broken = error;
  };
  client.on('error', markBroken);
  try {
    return await use(client, markBroken);
  } finally {
    client.off('error', markBroken);
    client.release(broken);
  }
}
