import type { CoreMachineConfig } from '../../core/config';
import { openDatabase } from '../../core/database';
import { migrate, schemaStatus } from '../../core/db/migrator';
import type { Logger } from '../../core/logger';
import { UsageError, type CliIo } from './io';

/** `coremachine db migrate|status`; status exits 1 when the schema is not the one this code needs. */
export async function runDb(sub: string | undefined, config: CoreMachineConfig, logger: Logger, io: CliIo): Promise<number> {
  if (sub !== 'migrate' && sub !== 'status') throw new UsageError(`unknown db command ${JSON.stringify(sub)}: use migrate or status`);
  const database = await openDatabase(config, logger, { migrate: false });
  try {
    if (sub === 'migrate') {
      const { from, to } = await migrate(database.pool);
      io.out(from === to ? `schema is up to date at version ${to}\n` : `schema migrated from version ${from} to ${to}\n`);
      return 0;
    }
    const { databaseVersion, expectedVersion, upToDate } = await schemaStatus(database.pool);
    const advice = upToDate
      ? 'up to date'
      : databaseVersion < expectedVersion
        ? 'run "coremachine db migrate"'
        : 'the database is newer than this CoreMachine: upgrade CoreMachine (db migrate cannot go back)';
    io.out(`database schema version ${databaseVersion}, this CoreMachine expects ${expectedVersion} (${advice})\n`);
    return upToDate ? 0 : 1;
  } finally {
    await database.close();
  }
}
