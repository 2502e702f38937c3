import type { CoreMachineConfig } from '../../core/config';
import { openDatabase } from '../../core/database';
import { assertSchemaVersion, migrate, schemaStatus } from '../../core/db/migrator';
import type { Logger } from '../../core/logger';
import type { Queryable } from '../../core/db/pool';
import { versionsInUse } from '../../core/engine/versions';
import type { Registry } from '../../core/registry';
import { table } from './format';
import { UsageError, type CliIo } from './io';

/**
 * `coremachine db migrate|status|versions`; status exits 1 when the schema is not the one this code
 * needs, versions when the registration would leave active jobs waiting for a version it dropped.
 */
export async function runDb(sub: string | undefined, config: CoreMachineConfig, logger: Logger, io: CliIo, registry: () => Registry): Promise<number> {
  if (sub !== 'migrate' && sub !== 'status' && sub !== 'versions')
    throw new UsageError(`unknown db command ${JSON.stringify(sub)}: use migrate, status or versions`);
  // The registration first: a build that is missing fails before any connection is tried.
  const registered = sub === 'versions' ? registry() : undefined;
  const database = await openDatabase(config, logger, { migrate: false });
  try {
    if (registered) return await checkVersions(database.pool, registered, io);
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

/**
 * Every version unfinished jobs run, and whether `registry` (what is about to be deployed) still
 * has it. An active job whose version is missing would wait after the deploy: refused (exit 1).
 * FAILED jobs of a missing version are only named: they run again only if an operator retries them.
 */
async function checkVersions(db: Queryable, registry: Registry, io: CliIo): Promise<number> {
  await assertSchemaVersion(db);
  const inUse = await versionsInUse(db, registry);
  if (inUse.length === 0) {
    io.out('no unfinished jobs: any registration can be deployed\n');
    return 0;
  }
  const rows = inUse.map((use) => [use.jobType, `v${use.version}`, String(use.activeJobs), String(use.failedJobs), use.registered ? 'yes' : 'NO']);
  io.out(`${table(['TYPE', 'VERSION', 'ACTIVE', 'FAILED', 'REGISTERED'], rows)}\n`);
  const blocking = inUse.filter((use) => !use.registered && use.activeJobs > 0);
  for (const use of inUse.filter((entry) => !entry.registered && entry.activeJobs === 0)) {
    io.out(`note: ${use.failedJobs} FAILED ${use.jobType} job(s) of v${use.version} would wait if retried\n`);
  }
  if (blocking.length === 0) {
    io.out('every version an active job runs is registered\n');
    return 0;
  }
  const names = blocking.map((use) => `${use.jobType} v${use.version} (${use.activeJobs} active job(s))`).join(', ');
  io.err(
    `coremachine db versions: this registration drops ${names}; those jobs would wait until the version is deployed again. Keep registering it (defineJob({ version })) until they end, or cancel them first\n`,
  );
  return 1;
}
