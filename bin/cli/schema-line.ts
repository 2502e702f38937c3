import { expectedSchemaVersion } from '../../core/db/migrator';
import type { Database } from '../../core/database';

/** What the start did to the schema, in the words the README uses. */
export function schemaLine(database: Database): string {
  const migrated = database.migrated;
  if (migrated && migrated.from !== migrated.to) return `migrated schema ${migrated.from} → ${migrated.to}`;
  return `schema at version ${migrated?.to ?? expectedSchemaVersion()}`;
}
