import { CoreMachine } from '../core/engine/core-machine';
import { SchemaVersionError } from '../core/errors';
import { expectedSchemaVersion, loadMigrations, migrate, schemaStatus } from '../core/db/migrator';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { createTestDatabase, type TestDatabase } from './support/test-database';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase({ migrate: false });
});
afterAll(async () => {
  await db.drop();
});

const deps = () => ({ pool: db.pool, registry: new Registry(), transport: new InProcessTransport(), logger: createLogger('silent') });

test('the engine refuses to start on an unmigrated database, naming both versions', async () => {
  const error = await CoreMachine.create(deps()).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(SchemaVersionError);
  expect((error as Error).message).toBe(
    `database schema is at version 0 but this CoreMachine needs version ${expectedSchemaVersion()}: run "coremachine db migrate"`,
  );
});

test('migrations run concurrently from eight processes apply exactly once', async () => {
  const pools = Array.from({ length: 8 }, () => db.newPool(1));
  const results = await Promise.all(pools.map((pool) => migrate(pool)));
  expect(results.filter((r) => r.from === 0)).toHaveLength(1);
  expect(results.every((r) => r.to === expectedSchemaVersion())).toBe(true);
  const applied = await db.pool.query('SELECT version FROM coremachine.schema_migrations ORDER BY version');
  expect(applied.rows.map((r: { version: number }) => r.version)).toEqual(loadMigrations().map((m) => m.version));
  expect(await schemaStatus(db.pool)).toEqual({ databaseVersion: expectedSchemaVersion(), expectedVersion: expectedSchemaVersion(), upToDate: true });
  await expect(CoreMachine.create(deps())).resolves.toBeInstanceOf(CoreMachine);
  // No session-level advisory lock is left behind on any pooled connection.
  // pg_locks is server-wide: other test files migrating their own databases at this moment hold
  // (transaction-scoped) advisory locks there, so only this database's count.
  const locks = await db.pool.query(
    "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
  );
  expect(locks.rows[0]).toEqual({ n: 0 });
});

test('a database migrated by a newer CoreMachine is refused too, naming both versions', async () => {
  const newer = expectedSchemaVersion() + 1;
  await db.pool.query("INSERT INTO coremachine.schema_migrations (version, name) VALUES ($1, 'from_the_future')", [newer]);
  try {
    const error = await CoreMachine.create(deps()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaVersionError);
    expect((error as Error).message).toContain(`version ${newer}, newer than version ${expectedSchemaVersion()}`);
    await expect(migrate(db.pool)).rejects.toBeInstanceOf(SchemaVersionError);
  } finally {
    await db.pool.query('DELETE FROM coremachine.schema_migrations WHERE version = $1', [newer]);
  }
});
