import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { freePort } from './free-port';
import os from 'node:os';
import path from 'node:path';

/** Debian's package puts it here; `.ci/run` installs it (`apt-get install pgbouncer`). */
export const PGBOUNCER_BIN = process.env.PGBOUNCER_BIN ?? '/usr/sbin/pgbouncer';

export interface PgBouncer {
  /** postgres://…@127.0.0.1:<port>/<database>: the same server, through the pooler. */
  urlFor(database: string): string;
  port: number;
  stop(): Promise<void>;
}

export function pgbouncerAvailable(): boolean {
  try {
    fs.accessSync(PGBOUNCER_BIN, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function listening(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`pgbouncer did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts PgBouncer in transaction mode in front of `serverUrl` (a wildcard `[databases]` entry,
 * so every per-file test database is reachable), on a free port, with its config in a temp dir.
 * `auth_type = any` logs every client in as the server URL's user: the tests need no passwords.
 * Transaction mode is the point: each transaction may get another server connection, so any
 * session state the engine kept (session locks, SET, LISTEN, temp tables, named prepared
 * statements on 1.18) would break.
 */
export async function startPgBouncer(serverUrl: string, options: { poolSize?: number } = {}): Promise<PgBouncer> {
  const server = new URL(serverUrl);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coremachine-pgbouncer-'));
  const user = decodeURIComponent(server.username || 'postgres');
  fs.writeFileSync(path.join(dir, 'userlist.txt'), `"${user}" ""\n`);
  const password = server.password ? ` password=${decodeURIComponent(server.password)}` : '';
  fs.writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || 5432} user=${user}${password}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = any',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 60}`,
      'max_client_conn = 2000',
      // node-postgres sends no such parameters today; listed so a driver upgrade cannot break the run.
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root; -u drops to the postgres user, which must read the config
  // and write its log and pid file in the (throwaway) dir.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) fs.chmodSync(dir, 0o777);
  const child: ChildProcess = spawn(PGBOUNCER_BIN, [...(asRoot ? ['-u', 'postgres'] : []), path.join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([
      listening(port, 10_000),
      exited.then(() => {
        const log = fs.existsSync(path.join(dir, 'pgbouncer.log')) ? fs.readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8') : '';
        throw new Error(`pgbouncer exited at start: ${stderr}${log}`);
      }),
    ]);
  } catch (error) {
    child.kill('SIGTERM');
    throw error;
  }
  return {
    port,
    urlFor: (database) => {
      const url = new URL(serverUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      url.pathname = `/${database}`;
      return url.toString();
    },
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGINT'); // immediate shutdown
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
