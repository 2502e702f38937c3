import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { sleep } from './stats';

/**
 * A throwaway PgBouncer in transaction mode in front of the bench server, for `--instances`
 * runs "via PgBouncer" (as Azure's built-in PgBouncer would sit in front of a General Purpose
 * server). Started once per bench run on a free loopback port with its own config directory,
 * stopped (by its pid) at the end.
 */
export interface BenchBouncer {
  /** `databaseUrl` with host and port replaced by PgBouncer's. */
  urlFor(databaseUrl: string): string;
  /** The admin console (database `pgbouncer`), for KILL/RESUME after a run. */
  consoleUrl: string;
  poolSize: number;
  stop(): Promise<void>;
}

const CANDIDATES = [process.env.PGBOUNCER, '/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

export function findPgBouncer(): string | undefined {
  return CANDIDATES.find((candidate): candidate is string => typeof candidate === 'string' && fs.existsSync(candidate));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function startPgBouncer(binary: string, adminUrl: string, poolSize: number, log: (line: string) => void): Promise<BenchBouncer> {
  const server = new URL(adminUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cm-bench-pgbouncer-'));
  // PgBouncer refuses to run as root; it then runs as `postgres`, which must read this directory.
  fs.chmodSync(dir, 0o755);
  const config = [
    '[databases]',
    `* = host=${server.hostname} port=${server.port || '5432'}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'users.txt')}`,
    `admin_users = ${user}`,
    'pool_mode = transaction',
    `default_pool_size = ${poolSize}`,
    'max_client_conn = 5000',
    // node-postgres sends none of these today; listed so a driver update cannot break the bench.
    'ignore_startup_parameters = extra_float_digits,options',
    // No logfile: running as `postgres` it could not create one here; it logs to stderr instead.
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'pgbouncer.ini'), `${config}\n`, { mode: 0o644 });
  // trust still looks the user up in auth_file.
  fs.writeFileSync(path.join(dir, 'users.txt'), `"${user}" ""\n`, { mode: 0o644 });
  const args = process.getuid?.() === 0 ? ['-u', 'postgres', path.join(dir, 'pgbouncer.ini')] : [path.join(dir, 'pgbouncer.ini')];
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  // Only the tail is kept (for the error message if it dies); the stream must be read either way.
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const urlFor = (databaseUrl: string) => {
    const url = new URL(databaseUrl);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    return url.toString();
  };
  const consoleUrl = urlFor(new URL('/pgbouncer', adminUrl).toString());
  const stop = async () => {
    if (child.exitCode === null && child.pid !== undefined) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`pgbouncer exited (${child.exitCode}): ${stderr}`);
    }
    const probe = new pg.Client({ connectionString: urlFor(adminUrl) });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.query('SELECT 1');
      await probe.end();
      break;
    } catch (error) {
      await probe.end().catch(() => undefined);
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`pgbouncer did not accept connections: ${error instanceof Error ? error.message : String(error)}`);
      }
      await sleep(100);
    }
  }
  log(`PgBouncer ${binary} on 127.0.0.1:${port}, transaction mode, default_pool_size ${poolSize}`);
  return { urlFor, consoleUrl, poolSize, stop };
}
