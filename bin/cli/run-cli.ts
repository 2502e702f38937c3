import { exampleJobs } from '../../jobs';
import { loadConfig } from '../../core/config';
import { createPool } from '../../core/db/pool';
import { migrate, schemaStatus } from '../../core/db/migrator';
import { startEmbeddedPostgres } from '../../core/db/embedded';
import { createLogger } from '../../core/logger';
import { Registry } from '../../core/registry';
import { runDemo } from './demo';
import { runDev } from './dev';

const USAGE = `usage: coremachine <command>
  demo [--job hello_world|word_frequencies] [--n N]   run an example job end to end
  dev [--port 7071] [--host 127.0.0.1]                serve the HTTP API + dashboard with local workers
  db migrate                                          apply pending schema migrations
  db status                                           show schema version`;

export async function runCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const config = loadConfig();
  const logger = createLogger(process.env.LOG_LEVEL ? config.logLevel : 'warn');
  const registry = new Registry().register(...exampleJobs);
  switch (command) {
    case 'demo':
      return runDemo(config, registry, logger, rest);
    case 'dev':
      return runDev(config, registry, createLogger(config.logLevel), rest);
    case 'db':
      return runDb(rest[0], config, logger);
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(`${USAGE}\n`);
      return command ? 0 : 2;
    default:
      process.stderr.write(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

async function runDb(sub: string | undefined, config: ReturnType<typeof loadConfig>, logger: ReturnType<typeof createLogger>): Promise<number> {
  if (sub !== 'migrate' && sub !== 'status') {
    process.stderr.write(`usage: coremachine db migrate|status\n`);
    return 2;
  }
  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, logger });
  const pool = createPool(config.databaseUrl ?? embedded?.connectionString ?? '', 2);
  try {
    if (sub === 'migrate') {
      const { from, to } = await migrate(pool);
      process.stdout.write(from === to ? `schema is up to date at version ${to}\n` : `schema migrated from version ${from} to ${to}\n`);
      return 0;
    }
    const status = await schemaStatus(pool);
    process.stdout.write(`database schema version ${status.databaseVersion}, this CoreMachine expects ${status.expectedVersion}${status.upToDate ? ' (up to date)' : ' (run "coremachine db migrate")'}\n`);
    return status.upToDate ? 0 : 1;
  } finally {
    await pool.end();
    await embedded?.stop();
  }
}
