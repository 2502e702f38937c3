import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createPool } from '../../core/db/pool';
import { migrate } from '../../core/db/migrator';

export interface TestDatabase {
  /** How the engine reaches the database: through PgBouncer in the PgBouncer run, else direct. */
  url: string;
  pool: pg.Pool;
  /** A new pool on the same database: separate connections for concurrency tests. */
  newPool(max: number): pg.Pool;
  drop(): Promise<void>;
}

function adminUrl(): string {
  const url = process.env.COREMACHINE_TEST_ADMIN_URL;
  if (!url) throw new Error('COREMACHINE_TEST_ADMIN_URL is not set: jest globalSetup did not run');
  return url;
}

/** A fresh, migrated database for one test file. */
export async function createTestDatabase(options: { migrate?: boolean; poolMax?: number } = {}): Promise<TestDatabase> {
  const name = `cm_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  // The PgBouncer run (jest.pgbouncer.config.js): same database, through the pooler's port.
  const bouncerPort = process.env.COREMACHINE_TEST_PGBOUNCER_PORT;
  if (bouncerPort) {
    url.hostname = '127.0.0.1';
    url.port = bouncerPort;
  }
  const pools: pg.Pool[] = [];
  const newPool = (max: number) => {
    const pool = createPool(url.toString(), max);
    pools.push(pool);
    return pool;
  };
  const pool = newPool(options.poolMax ?? 12);
  if (options.migrate ?? true) await migrate(pool);
  return {
    url: url.toString(),
    pool,
    newPool,
    drop: async () => {
      await Promise.all(pools.map((p) => p.end()));
      const client = new pg.Client({ connectionString: adminUrl() });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
