import { loadConfig, type CoreMachineConfig } from '../../core/config';
import { createLogger } from '../../core/logger';
import type { Registry } from '../../core/registry';
import { guardIo, processIo, UsageError, type CliIo } from './io';
import { LOCAL_COMMANDS, localUsage, parseLocalArgs, type LocalArgs, type LocalCommandName } from './local-args';
import { REMOTE_COMMANDS, REMOTE_OPTIONS_USAGE, REMOTE_USAGE, runRemote, usageLine } from './remote';
import { withShutdownSignal } from './shutdown';
import { describeStartupError } from './startup-errors';

const USAGE = [
  'usage: coremachine <command> [--help]',
  ...Object.values(LOCAL_COMMANDS).map(({ synopsis, meaning }) => usageLine(synopsis, meaning)),
  'over HTTP, against "coremachine dev" or the Functions app:',
  ...REMOTE_USAGE,
  REMOTE_OPTIONS_USAGE,
  'exit codes: 0 success · 1 failure (the API refused, a job did not end COMPLETED, the database could not be reached) · 2 usage error',
].join('\n');

export interface CliOptions {
  /** The job types local commands run; the shipped examples unless a test brings its own. */
  registry?: Registry;
}

/**
 * The whole CLI; io carries stdout, stderr and the environment so tests can run it in-process.
 * Every command gets the io guarded: error messages, parameters and names that came from a
 * server, a handler or a file reach the terminal with their control characters made visible.
 */
export async function runCli(argv: string[], given: CliIo = processIo(), options: CliOptions = {}): Promise<number> {
  const io = guardIo(given);
  const [command, ...rest] = argv;
  if (command !== undefined && REMOTE_COMMANDS.includes(command)) return runRemote(command, rest, io);
  if (command !== undefined && command in LOCAL_COMMANDS) return runLocal(command as LocalCommandName, rest, io, options);
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      // Asked for help: stdout, success. No command at all: a usage error.
      if (command) io.out(`${USAGE}\n`);
      else io.err(`${USAGE}\n`);
      return command ? 0 : 2;
    default:
      io.err(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

/**
 * Commands that run the engine in this process. Every failure is one line on stderr and exit 1
 * (2 for a wrong invocation); whatever was started (workers, embedded PostgreSQL) is stopped by
 * the command before this returns.
 */
async function runLocal(command: LocalCommandName, rest: string[], io: CliIo, options: CliOptions): Promise<number> {
  const usageError = (error: UsageError) => {
    io.err(`coremachine ${command}: ${error.message}\n${localUsage(command)}\n`);
    return 2;
  };
  let args: LocalArgs;
  try {
    args = parseLocalArgs(command, rest);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error);
    throw error;
  }
  if (args.values.help === true) {
    io.out(`${localUsage(command)}\n`);
    return 0;
  }
  let config: CoreMachineConfig | undefined;
  try {
    // The preflight reads the Bicep, the environment and the registrations; it opens no database.
    /* eslint-disable @typescript-eslint/no-require-imports -- loaded on demand, like the commands below */
    if (command === 'doctor') return (require('./doctor') as typeof import('./doctor')).runDoctor(args, io);
    // Files only: a new app, its artifact, its Bicep. No database, no settings.
    if (command === 'init') return (require('./init') as typeof import('./init')).runInit(args, io);
    if (command === 'package') return await (require('./package-app') as typeof import('./package-app')).runPackage(args, io);
    if (command === 'infra') return (require('./infra-sync') as typeof import('./infra-sync')).runInfra(args, io);
    /* eslint-enable @typescript-eslint/no-require-imports */
    config = loadConfig(io.env);
    const quietLevel = io.env.LOG_LEVEL ? config.logLevel : 'warn';
    // Loaded on demand: the engine, the Azure SDKs and Application Insights take seconds to load,
    // which `--help`, a usage error or a remote command should not pay.
    // (require, not import(): this is CommonJS, and jest's transform resolves require the same way.)
    /* eslint-disable @typescript-eslint/no-require-imports */
    const ready = config;
    return await withShutdownSignal((signal) => {
      if (command === 'db') {
        return (require('./db') as typeof import('./db')).runDb(
          args.positionals[0],
          ready,
          createLogger(quietLevel),
          io,
          () => options.registry ?? localRegistry(args, io),
        );
      }
      const registry = options.registry ?? localRegistry(args, io);
      if (command === 'demo') return (require('./demo') as typeof import('./demo')).runDemo(ready, registry, createLogger(quietLevel), args, io, signal);
      return (require('./dev') as typeof import('./dev')).runDev(ready, registry, createLogger(ready.logLevel), args, io, signal);
    });
    /* eslint-enable @typescript-eslint/no-require-imports */
  } catch (error) {
    if (error instanceof UsageError) return usageError(error);
    io.err(`${describeStartupError(error, config)}\n`);
    return 1;
  }
}

/**
 * The job types `dev` and `demo` run: the module --registration names, else the one the app's
 * package.json names ("coremachine": {"registration": …}), else the examples this package ships.
 */
function localRegistry(args: LocalArgs, io: CliIo): Registry {
  /* eslint-disable @typescript-eslint/no-require-imports -- loaded on demand, like the commands */
  const flag = typeof args.values.registration === 'string' ? args.values.registration : undefined;
  const app = (require('./app-registration') as typeof import('./app-registration')).loadAppRegistry(flag, io.cwd ?? process.cwd());
  return app?.registry ?? (require('./example-registry') as typeof import('./example-registry')).exampleRegistry();
  /* eslint-enable @typescript-eslint/no-require-imports */
}
