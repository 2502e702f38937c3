import { exampleJobs, exampleSchedules } from '../../jobs';
import { loadConfig } from '../../core/config';
import { createPool, poolOptions } from '../../core/db/pool';
import { databasePoolOptions } from '../../core/db/entra-token';
import { migrate, schemaStatus } from '../../core/db/migrator';
import { startEmbeddedPostgres } from '../../core/db/embedded';
import { createLogger } from '../../core/logger';
import { Registry } from '../../core/registry';
import { runDemo } from './demo';
import { runDev } from './dev';
import { processIo, type CliIo } from './io';
import { REMOTE_COMMANDS, REMOTE_OPTIONS_USAGE, REMOTE_USAGE, runRemote, usageLine } from './remote';

const USAGE = [
  'usage: coremachine <command>',
  usageLine('demo [--job hello_world|word_frequencies] [--n N]', 'run an example job end to end'),
  usageLine('dev [--port 7071] [--host 127.0.0.1]', 'serve the HTTP API + dashboard with local workers'),
  usageLine('db migrate', 'apply pending schema migrations'),
  usageLine('db status', 'show schema version'),
  'over HTTP, against "coremachine dev" or the Functions app:',
  ...REMOTE_USAGE,
  REMOTE_OPTIONS_USAGE,
  'exit codes: 0 success · 1 the API refused, or a watched job did not end COMPLETED · 2 usage error',
].join('\n');

/** The whole CLI; io carries stdout, stderr and the environment so tests can run it in-process. */
export async function runCli(argv: string[], io: CliIo = processIo()): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && REMOTE_COMMANDS.includes(command)) return runRemote(command, rest, io);
  switch (command) {
    case 'demo':
    case 'dev':
    case 'db':
      return runLocal(command, rest, io);
    case undefined:
    case 'help':
    case '--help':
      // Asked for help: stdout, success. No command at all: a usage error.
      if (command) io.out(`${USAGE}\n`);
      else io.err(`${USAGE}\n`);
      return command ? 0 : 2;
    default:
      io.err(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

/** Commands that run the engine in this process: only they need the configuration and a registry. */
async function runLocal(command: 'demo' | 'dev' | 'db', rest: string[], io: CliIo): Promise<number> {
  const config = loadConfig();
  const logger = createLogger(process.env.LOG_LEVEL ? config.logLevel : 'warn');
  const registry = new Registry().register(...exampleJobs).registerSchedule(...exampleSchedules);
  if (command === 'demo') return runDemo(config, registry, logger, rest);
  if (command === 'dev') return runDev(config, registry, createLogger(config.logLevel), rest);
  return runDb(rest[0], config, logger, io);
}

async function runDb(sub: string | undefined, config: ReturnType<typeof loadConfig>, logger: ReturnType<typeof createLogger>, io: CliIo): Promise<number> {
  if (sub !== 'migrate' && sub !== 'status') {
    io.err(`usage: coremachine db migrate|status\n`);
    return 2;
  }
  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, logger });
  const pool = createPool(config.databaseUrl ?? embedded?.connectionString ?? '', { ...poolOptions(config, embedded ? {} : databasePoolOptions(config)), max: 2 });
  try {
    if (sub === 'migrate') {
      const { from, to } = await migrate(pool);
      io.out(from === to ? `schema is up to date at version ${to}\n` : `schema migrated from version ${from} to ${to}\n`);
      return 0;
    }
    const status = await schemaStatus(pool);
    io.out(`database schema version ${status.databaseVersion}, this CoreMachine expects ${status.expectedVersion}${status.upToDate ? ' (up to date)' : ' (run "coremachine db migrate")'}\n`);
    return status.upToDate ? 0 : 1;
  } finally {
    await pool.end();
    await embedded?.stop();
  }
}
