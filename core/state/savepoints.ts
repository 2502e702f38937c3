import type { Queryable } from '../db/pool';

/** A closed set: a name is spliced into the statement, so it is never caller text. */
export type SavepointName = 'fan_out';

/**
 * Savepoints let part of a transaction be undone while the rest commits (a failing fan-out drops
 * its partial tasks while its job is still marked FAILED). Names are the engine's own constants.
 */
export async function savepoint(db: Queryable, name: SavepointName): Promise<void> {
  await db.query(`SAVEPOINT ${name}`);
}

export async function rollbackToSavepoint(db: Queryable, name: SavepointName): Promise<void> {
  await db.query(`ROLLBACK TO SAVEPOINT ${name}`);
}

export async function releaseSavepoint(db: Queryable, name: SavepointName): Promise<void> {
  await db.query(`RELEASE SAVEPOINT ${name}`);
}
