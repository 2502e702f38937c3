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

export class SqlCounter {
  private statements = 0;
  private transactions = 0;
  private readonly byKey = new Map<string, StatementStat>();

  /** A pg.Pool whose clients report to this counter. */
  createPool(connectionString: string, max: number, applicationName: string): pg.Pool {
    const pool = new pg.Pool({ connectionString, max, application_name: applicationName });
    pool.on('error', () => undefined);
    pool.on('connect', (client) => this.instrument(client));
    return pool;
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

  private instrument(client: pg.PoolClient): void {
    const target = client as unknown as { query: AnyFunction };
    const original = target.query.bind(client);
    let inTransaction = false;
    target.query = (...args: unknown[]): unknown => {
      const key = statementKey(args[0]);
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
          return callback(...callbackArgs);
        };
        return original(...args);
      }
      const result = original(...args);
      if (result instanceof Promise) return result.finally(done);
      done();
      return result;
    };
  }
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
