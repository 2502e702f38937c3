/**
 * What running behind PgBouncer in transaction mode asks of the engine: no session state across
 * transactions, and named prepared statements switchable off (COREMACHINE_PREPARED_STATEMENTS).
 * The engine suites themselves run through PgBouncer in jest.pgbouncer.config.js.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { preparedStatementsFromEnv } from '../core/config';
import { createPool } from '../core/db/pool';
import { pgbouncerAvailable, startPgBouncer } from './support/pgbouncer';
import { useTestDatabase } from './support/harness';

const db = useTestDatabase({ checkAfterEach: false });

function directUrl(): string {
  const url = new URL(process.env.COREMACHINE_TEST_ADMIN_URL ?? '');
  url.pathname = new URL(db.url).pathname;
  return url.toString();
}

const named = { name: 'cm_probe', text: 'SELECT $1::int + 1 AS n', values: [41] };

async function preparedOnConnection(pool: pg.Pool): Promise<number> {
  const client = await pool.connect();
  try {
    expect((await client.query<{ n: number }>(named)).rows[0]?.n).toBe(42);
    return (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'cm_probe'")).rows[0]?.n ?? -1;
  } finally {
    client.release();
  }
}

test('COREMACHINE_PREPARED_STATEMENTS=off strips statement names; on keeps them', async () => {
  const on = createPool(directUrl(), { max: 1, preparedStatements: true });
  const off = createPool(directUrl(), { max: 1, preparedStatements: false });
  try {
    expect(await preparedOnConnection(on)).toBe(1);
    expect(await preparedOnConnection(off)).toBe(0);
  } finally {
    await Promise.all([on.end(), off.end()]);
  }
  expect(preparedStatementsFromEnv({})).toBe(true);
  expect(preparedStatementsFromEnv({ COREMACHINE_PREPARED_STATEMENTS: 'off' })).toBe(false);
  expect(preparedStatementsFromEnv({ COREMACHINE_PREPARED_STATEMENTS: 'OFF ' })).toBe(false);
  expect(() => preparedStatementsFromEnv({ COREMACHINE_PREPARED_STATEMENTS: 'maybe' })).toThrow(/COREMACHINE_PREPARED_STATEMENTS/);
});

const withBouncer = pgbouncerAvailable() ? test : test.skip;
if (!pgbouncerAvailable()) process.stderr.write('[tests] pgbouncer not installed: skipping the prepared-statement check through it\n');

withBouncer('through PgBouncer 1.18 in transaction mode, named statements collide on a shared server connection; unnamed ones do not', async () => {
  // One server connection for every client makes the sharing deterministic.
  const bouncer = await startPgBouncer(process.env.COREMACHINE_TEST_ADMIN_URL ?? '', { poolSize: 1 });
  const database = new URL(db.url).pathname.slice(1);
  const client = (preparedStatements: boolean) => createPool(bouncer.urlFor(database), { max: 1, preparedStatements });
  const pools = [client(true), client(true), client(false), client(false)] as const;
  const [a, b, c, d] = pools;
  try {
    await a.query(named);
    // The second client prepares "cm_probe" again on the server connection that already has it.
    await expect(b.query(named)).rejects.toMatchObject({ code: '42P05' });
    for (const pool of [c, d, c, d]) expect((await pool.query<{ n: number }>(named)).rows[0]?.n).toBe(42);
  } finally {
    await Promise.all(pools.map((pool) => pool.end()));
    await bouncer.stop();
  }
});

/** Every .ts and .sql file under a folder, for the session-state audit below. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) return sources(full);
    return /\.(ts|sql)$/.test(entry) ? [full] : [];
  });
}

test('the engine keeps no session state: no session advisory locks, SET without LOCAL, LISTEN or temp tables', () => {
  const root = path.resolve(__dirname, '..');
  const offenders: string[] = [];
  const forbidden = [
    /pg_(try_)?advisory_lock(_shared)?\s*\(/i, // session-level; the _xact_ variants end with the transaction
    /\bLISTEN\s+\w/,
    /\bCREATE\s+(TEMP|TEMPORARY)\s+TABLE\b/i,
    /['"`]\s*SET\s+(SESSION\s+)?(?!LOCAL\b)\w+\s*(=|TO\b)/i, // SET at the start of a statement, not SET LOCAL
    /set_config\s*\([^)]*,\s*false\s*\)/i,
  ];
  for (const file of [...sources(path.join(root, 'core')), ...sources(path.join(root, 'infra/migrations'))]) {
    const text = readFileSync(file, 'utf8');
    for (const pattern of forbidden) if (pattern.test(text)) offenders.push(`${path.relative(root, file)}: ${pattern.source}`);
  }
  expect(offenders).toEqual([]);
  // The audit itself can fail: it sees what it forbids.
  expect(forbidden.some((pattern) => pattern.test("await client.query('SET statement_timeout = 0')"))).toBe(true);
  expect(forbidden.some((pattern) => pattern.test("await client.query('SET LOCAL statement_timeout = 0')"))).toBe(false);
});
