import { boolArray, jsonArray, numberArray, textArray, timestampArray } from '../core/state/pg-arrays';
import { useTestDatabase } from './support/harness';

// The batch statements' array parameters are encoded by hand (core/state/pg-arrays.ts): every
// value must come back from PostgreSQL exactly as it went in.
const db = useTestDatabase();

test('text arrays round-trip whatever the elements hold', async () => {
  const values = [
    'plain-id_1.2:3',
    '',
    'NULL',
    'null',
    'Null',
    'with space',
    'com,ma',
    '{braces}',
    'quo"te',
    'back\\slash',
    '\\"both',
    'tab\tand\nnewline',
    'ünïcødé 😀',
    null,
    'a'.repeat(100),
    // Runs of one value are encoded once and repeated (a batch's slot keys): plain, quoted and null.
    'scope:',
    'scope:',
    'quo"te',
    'quo"te',
    null,
    null,
    'NULL',
    'NULL',
  ];
  const { rows } = await db.pool.query<{ t: Array<string | null> }>('SELECT $1::text[] AS t', [textArray(values)]);
  expect(rows[0]?.t).toEqual(values);
  expect((await db.pool.query<{ t: string[] }>('SELECT $1::text[] AS t', [textArray([])])).rows[0]?.t).toEqual([]);
});

test('number, bool and timestamp arrays round-trip; a non-finite number is refused before SQL', async () => {
  const at = new Date('2026-11-30T12:34:56.789Z');
  const { rows } = await db.pool.query<{ i: number[]; f: number[]; b: boolean[]; ts: Array<Date | null> }>(
    'SELECT $1::int[] AS i, $2::float8[] AS f, $3::bool[] AS b, $4::timestamptz[] AS ts',
    [numberArray([1, -2, 2_147_483_647]), numberArray([0.5, 300, 1e-7]), boolArray([true, false]), timestampArray([at, null])],
  );
  expect(rows[0]).toEqual({ i: [1, -2, 2_147_483_647], f: [0.5, 300, 1e-7], b: [true, false], ts: [at, null] });
  expect(() => numberArray([1, Number.NaN])).toThrow(RangeError);
});

test('a JSON array document gives each element back by position, JSON null as jsonb null', async () => {
  const values: unknown[] = [{ a: 'quo"te \\ back', n: [1, 2] }, null, 'ünïcødé 😀', 42, { nested: { deep: [{ x: '' }] } }];
  const { rows } = await db.pool.query<{ i: number; v: unknown; is_sql_null: boolean }>(
    'SELECT i, $1::jsonb -> i AS v, ($1::jsonb -> i) IS NULL AS is_sql_null FROM generate_series(0, $2::int - 1) AS i ORDER BY i',
    [jsonArray(values.map((value) => JSON.stringify(value))), values.length],
  );
  expect(rows.map((row) => row.v)).toEqual(values);
  expect(rows.map((row) => row.is_sql_null)).toEqual([false, false, false, false, false]);
  expect((await db.pool.query<{ v: unknown }>('SELECT $1::jsonb -> 1 AS v', [jsonArray(['1', null])])).rows[0]?.v).toBeNull();
});
