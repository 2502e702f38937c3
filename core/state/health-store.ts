import type { Queryable } from '../db/pool';

/** The cheapest round trip that proves the database answers (the health probe's check). */
export async function pingDatabase(db: Queryable): Promise<void> {
  await db.query('SELECT 1');
}
