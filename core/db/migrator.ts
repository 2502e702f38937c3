import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { SchemaVersionError } from '../errors';
import { migrationsDir } from '../paths';
import { withTransaction, type Queryable } from './pool';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const FILE_NAME = /^(\d{3})_([a-z0-9_]+)\.sql$/;
// Transaction-scoped lock: it cannot leak across pooled connections the way a session lock can.
const MIGRATION_LOCK_KEY = 'coremachine.migrate';

export function loadMigrations(dir: string = migrationsDir()): Migration[] {
  const migrations = fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = FILE_NAME.exec(file);
      if (!match) throw new Error(`migration file "${file}" must be named NNN_name.sql`);
      return { version: Number(match[1]), name: match[2] ?? file, sql: fs.readFileSync(path.join(dir, file), 'utf8') };
    })
    .sort((a, b) => a.version - b.version);
  // Gaps are allowed (branches number their migrations apart, e.g. 005 then 007), duplicates are not.
  migrations.forEach((migration, index) => {
    const previous = migrations[index - 1];
    if (previous && previous.version === migration.version) {
      throw new Error(`two migrations are numbered ${String(migration.version).padStart(3, '0')}: ${previous.name} and ${migration.name}`);
    }
  });
  return migrations;
}

/** The highest migration number this code ships: the version a database must be at. */
export function expectedSchemaVersion(): number {
  return loadMigrations().at(-1)?.version ?? 0;
}

export async function databaseSchemaVersion(db: Queryable): Promise<number> {
  const exists = await db.query<{ present: boolean }>("SELECT to_regclass('coremachine.schema_migrations') IS NOT NULL AS present");
  if (!exists.rows[0]?.present) return 0;
  const result = await db.query<{ version: number | null }>('SELECT max(version) AS version FROM coremachine.schema_migrations');
  return result.rows[0]?.version ?? 0;
}

/** Applies the missing migrations in one transaction; safe to run from many processes at once. */
export async function migrate(pool: pg.Pool, migrations: Migration[] = loadMigrations()): Promise<{ from: number; to: number }> {
  return withTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [MIGRATION_LOCK_KEY]);
    await client.query('CREATE SCHEMA IF NOT EXISTS coremachine');
    await client.query(`CREATE TABLE IF NOT EXISTS coremachine.schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const from = await databaseSchemaVersion(client);
    const to = migrations.at(-1)?.version ?? 0;
    if (from > to) throw new SchemaVersionError(from, to);
    // Every migration not yet recorded, in order: one numbered into a gap later is still applied.
    const applied = await client.query<{ version: number }>('SELECT version FROM coremachine.schema_migrations');
    const done = new Set(applied.rows.map((row) => row.version));
    for (const migration of migrations.filter((m) => !done.has(m.version))) {
      await client.query(migration.sql);
      await client.query('INSERT INTO coremachine.schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
    }
    return { from, to };
  });
}

export async function schemaStatus(db: Queryable): Promise<{ databaseVersion: number; expectedVersion: number; upToDate: boolean }> {
  const databaseVersion = await databaseSchemaVersion(db);
  const expectedVersion = expectedSchemaVersion();
  return { databaseVersion, expectedVersion, upToDate: databaseVersion === expectedVersion };
}

/** The engine refuses to start against an older or newer schema, naming both versions. */
export async function assertSchemaVersion(db: Queryable): Promise<void> {
  const { databaseVersion, expectedVersion } = await schemaStatus(db);
  if (databaseVersion !== expectedVersion) throw new SchemaVersionError(databaseVersion, expectedVersion);
}
