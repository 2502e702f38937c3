import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { reachable, startTestEmbeddedPostgres } from '../tests/support/postgres-server';
import { sleep } from './stats';

/**
 * Where the benchmark runs: DATABASE_URL's server, else 127.0.0.1:5432, else an embedded
 * PostgreSQL it starts itself (as tests/support/postgres-server.ts does). Only loopback hosts
 * are accepted: a benchmark never sends load anywhere else.
 */
export interface BenchServer {
  /** Connection string of a maintenance database (used to create and drop bench databases). */
  adminUrl: string;
  origin: 'DATABASE_URL' | '127.0.0.1:5432' | 'embedded';
  stop(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const DEFAULT_LOCAL = 'postgres://postgres@127.0.0.1:5432/postgres';

export function assertLoopback(url: string): void {
  const host = new URL(url).hostname;
  if (!LOOPBACK.has(host)) throw new Error(`the benchmark only runs against a loopback PostgreSQL; DATABASE_URL host is "${host}"`);
}

export async function findServer(log: (line: string) => void): Promise<BenchServer> {
  const configured = process.env.DATABASE_URL;
  if (configured) {
    assertLoopback(configured);
    if (await reachable(configured)) return { adminUrl: configured, origin: 'DATABASE_URL', stop: () => Promise.resolve() };
    log(`DATABASE_URL is not reachable; trying ${DEFAULT_LOCAL}`);
  }
  if (await reachable(DEFAULT_LOCAL)) return { adminUrl: DEFAULT_LOCAL, origin: '127.0.0.1:5432', stop: () => Promise.resolve() };
  log('no PostgreSQL reachable: starting embedded PostgreSQL');
  return startEmbedded(55000 + Math.floor(Math.random() * 1000));
}

async function startEmbedded(port: number): Promise<BenchServer> {
  const server = await startTestEmbeddedPostgres(port, ['-c', 'max_connections=200']);
  return { adminUrl: server.url, origin: 'embedded', stop: server.stop };
}

export async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, application_name: 'cm-bench-admin' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface BenchDatabase {
  name: string;
  url: string;
}

/** A fresh database for one run: no bloat, no dead tuples, no cached plans from an earlier run. */
export async function createDatabase(adminUrl: string, label: string, settings: Record<string, string>): Promise<BenchDatabase> {
  const name = `cm_bench_${randomBytes(4).toString('hex')}_${label.replace(/[^a-z0-9_]/g, '_')}`;
  await withAdmin(adminUrl, async (client) => {
    await client.query(`CREATE DATABASE ${name}`);
    for (const [setting, value] of Object.entries(settings)) {
      await client.query(`ALTER DATABASE ${name} SET ${setting} = ${client.escapeLiteral(value)}`);
    }
  });
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { name, url: url.toString() };
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withAdmin(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
}

/** Bench databases a killed earlier run (or one running now) has: listed, never dropped blindly. */
export async function listLeftovers(adminUrl: string): Promise<string[]> {
  return withAdmin(adminUrl, async (client) => {
    const result = await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'cm\\_bench\\_%'");
    return result.rows.map((row) => row.datname);
  });
}

export async function serverSettings(adminUrl: string): Promise<Record<string, string>> {
  return withAdmin(adminUrl, async (client) => {
    const result = await client.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings
        WHERE name IN ('server_version','fsync','synchronous_commit','wal_sync_method','shared_buffers','commit_delay','max_connections','shared_preload_libraries')`,
    );
    return Object.fromEntries(result.rows.map((row) => [row.name, row.unit ? `${row.setting} (${row.unit})` : row.setting]));
  });
}

export interface ServerCounters {
  xactCommit: number;
  xactRollback: number;
  walRecords: number;
  walBytes: number;
  walSyncs: number;
}

/**
 * Cumulative statistics are flushed by a backend when it exits (and at most once a second while
 * it idles), so callers read these only after every connection to the database has closed.
 */
export async function readServerCounters(adminUrl: string, database: string): Promise<ServerCounters> {
  return withAdmin(adminUrl, async (client) => {
    await client.query('SELECT pg_stat_clear_snapshot()');
    const db = await client.query<{ xact_commit: string; xact_rollback: string }>(
      'SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1',
      [database],
    );
    const wal = await client.query<{ wal_records: string; wal_bytes: string; wal_sync: string }>('SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal');
    return {
      xactCommit: Number(db.rows[0]?.xact_commit ?? 0),
      xactRollback: Number(db.rows[0]?.xact_rollback ?? 0),
      walRecords: Number(wal.rows[0]?.wal_records ?? 0),
      walBytes: Number(wal.rows[0]?.wal_bytes ?? 0),
      walSyncs: Number(wal.rows[0]?.wal_sync ?? 0),
    };
  });
}

/** Waits until no backend is connected to `database`, so their statistics have been flushed. */
export async function waitForNoBackends(adminUrl: string, database: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await withAdmin(adminUrl, async (client) => {
    for (;;) {
      const result = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [database]);
      if ((result.rows[0]?.n ?? 0) === 0 || Date.now() > deadline) return;
      await sleep(20);
    }
  });
}

/** Other busy sessions on the server (e.g. a test suite running meanwhile) skew the numbers. */
export async function otherActiveSessions(adminUrl: string, database: string): Promise<number> {
  return withAdmin(adminUrl, async (client) => {
    const result = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state NOT LIKE 'idle%'
          AND datname IS DISTINCT FROM $1`,
      [database],
    );
    return result.rows[0]?.n ?? 0;
  });
}

/**
 * CPU nanoseconds of every backend connected to `database`, from /proc/<pid>/schedstat. Works
 * when the server runs on this machine (the only kind the benchmark accepts); empty otherwise.
 */
export async function backendCpu(client: pg.Client, database: string): Promise<Map<number, number>> {
  const result = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [database]);
  const cpu = new Map<number, number>();
  for (const { pid } of result.rows) {
    try {
      const fields = fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/);
      cpu.set(pid, Number(fields[0]));
    } catch {
      // Not local, or the backend just exited.
    }
  }
  return cpu;
}

export function cpuDeltaMs(before: Map<number, number>, after: Map<number, number>): number | null {
  if (after.size === 0) return null;
  let ns = 0;
  for (const [pid, value] of after) ns += value - (before.get(pid) ?? 0);
  return ns / 1e6;
}
