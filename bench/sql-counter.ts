import pg from 'pg';

/**
 * Counts every statement a pool sends, client side: pg_stat_statements needs
 * shared_preload_libraries, which a stock server does not have. Each pooled client's `query` is
 * wrapped when it connects, so pool.query, withTransaction and graphile-worker's own calls are
 * all seen. Transactions are counted the way the server counts them: an explicit BEGIN…COMMIT
 * is one, and every statement outside one is its own (autocommit) transaction.
 */
export interface StatementStat {
  key: string;
  calls: number;
  /** Client-observed latency: from the call to the result, including queueing on that connection. */
  totalMs: number;
}

export interface SqlCounts {
  statements: number;
  transactions: number;
  byStatement: StatementStat[];
}

type AnyFunction = (...args: unknown[]) => unknown;

export interface PoolOptions {
  /**
   * Send every named statement unnamed. PgBouncer 1.18 in transaction mode cannot track named
   * prepared statements (the next transaction may land on a server connection that never saw
   * the PREPARE); until the engine has its own switch, the bench strips names here.
   */
  stripStatementNames?: boolean;
}

export class SqlCounter {
  /** Called with every error a pooled query or a connection attempt rejects with. */
  onError: ((error: unknown) => void) | undefined;
  private statements = 0;
  private transactions = 0;
  private readonly byKey = new Map<string, StatementStat>();

  /** A pg.Pool whose clients report to this counter. */
  createPool(connectionString: string, max: number, applicationName: string, options: PoolOptions = {}): pg.Pool {
    const pool = new pg.Pool({ connectionString, max, application_name: applicationName });
    pool.on('error', () => undefined);
    pool.on('connect', (client) => {
      // A connection killed while checked out can emit 'error' more than once; unheard it would crash the run.
      client.on('error', () => undefined);
      this.instrument(client, options);
    });
    this.watchConnect(pool);
    return pool;
  }

  /** Refused or timed-out connection attempts never reach a client's query, so they are seen here. */
  private watchConnect(pool: pg.Pool): void {
    const target = pool as unknown as { connect: AnyFunction };
    const original = target.connect.bind(pool);
    target.connect = (...args: unknown[]): unknown => {
      const callback = args[0];
      if (typeof callback === 'function') {
        return original((error: unknown, ...rest: unknown[]) => {
          if (error) this.onError?.(error);
          return (callback as AnyFunction)(error, ...rest);
        });
      }
      return (original() as Promise<unknown>).catch((error: unknown) => {
        this.onError?.(error);
        throw error;
      });
    };
  }

  reset(): void {
    this.statements = 0;
    this.transactions = 0;
    this.byKey.clear();
  }

  snapshot(): SqlCounts {
    const byStatement = [...this.byKey.values()].map((s) => ({ ...s })).sort((a, b) => b.totalMs - a.totalMs);
    return { statements: this.statements, transactions: this.transactions, byStatement };
  }

  private instrument(client: pg.PoolClient, options: PoolOptions): void {
    const target = client as unknown as { query: AnyFunction };
    const original = target.query.bind(client);
    let inTransaction = false;
    target.query = (...args: unknown[]): unknown => {
      const key = statementKey(args[0]);
      if (options.stripStatementNames) args[0] = unnamed(args[0]);
      const verb = key.split(' ', 1)[0]?.toUpperCase() ?? '';
      this.statements++;
      if (verb === 'BEGIN' || verb === 'START') {
        inTransaction = true;
        this.transactions++;
      } else if (verb === 'COMMIT' || verb === 'ROLLBACK' || verb === 'END') {
        inTransaction = false;
      } else if (!inTransaction) {
        this.transactions++;
      }
      const stat = this.byKey.get(key) ?? { key, calls: 0, totalMs: 0 };
      stat.calls++;
      this.byKey.set(key, stat);
      const started = performance.now();
      const done = () => {
        stat.totalMs += performance.now() - started;
      };
      const last = args[args.length - 1];
      if (typeof last === 'function') {
        const callback = last as AnyFunction;
        args[args.length - 1] = (...callbackArgs: unknown[]) => {
          done();
          if (callbackArgs[0]) this.onError?.(callbackArgs[0]);
          return callback(...callbackArgs);
        };
        return original(...args);
      }
      const result = original(...args);
      if (result instanceof Promise) {
        return (result as Promise<unknown>).then(
          (value: unknown) => {
            done();
            return value;
          },
          (error: unknown) => {
            done();
            this.onError?.(error);
            throw error;
          },
        );
      }
      done();
      return result;
    };
  }
}

function unnamed(query: unknown): unknown {
  if (!query || typeof query !== 'object' || !('name' in query)) return query;
  const { name: _name, ...rest } = query as Record<string, unknown>;
  return rest;
}

/** Named statements by their name; anything else by its first words, whitespace collapsed. */
export function statementKey(query: unknown): string {
  if (typeof query === 'string') return shorten(query);
  if (query && typeof query === 'object') {
    const { name, text } = query as { name?: unknown; text?: unknown };
    if (typeof name === 'string' && name.length > 0) return name;
    if (typeof text === 'string') return shorten(text);
  }
  return '(submittable)';
}

function shorten(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 72 ? `${flat.slice(0, 72)}…` : flat;
}
