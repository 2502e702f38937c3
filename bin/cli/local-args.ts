import { parseArgs } from 'node:util';
import { UsageError } from './io';

type Options = Record<string, { type: 'string' | 'boolean'; short?: string }>;

interface LocalCommand {
  synopsis: string;
  meaning: string;
  options: Options;
  positionals: readonly string[];
  help: readonly string[];
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

const REGISTRATION_HELP =
  '--registration M  the compiled module exporting the job types to run (default: package.json "coremachine.registration", else the examples)';

/** The commands that run the engine in this process; each refuses flags it does not know. */
export const LOCAL_COMMANDS = {
  demo: {
    synopsis: 'demo [--job T] [--n N | --params JSON | --file F] [--timeout-seconds S] [--no-migrate] [--registration M]',
    meaning: 'run an example job end to end',
    options: {
      ...HELP,
      job: { type: 'string' },
      n: { type: 'string' },
      params: { type: 'string' },
      file: { type: 'string' },
      'timeout-seconds': { type: 'string' },
      'no-migrate': { type: 'boolean' },
      registration: { type: 'string' },
    },
    positionals: [],
    help: [
      '--job T         job type to run (default hello_world)',
      '--n N           hello_world shorthand for --params \'{"n":N}\' (default 100)',
      '--params JSON   the job parameters as JSON, e.g. --params \'{"n":5}\'',
      '--file F        the job parameters from a JSON file',
      "--timeout-seconds S  the job's deadline, S seconds from submission (may only shorten the job type's own)",
      '--no-migrate    do not apply pending migrations to DATABASE_URL (refuse a mismatched schema instead)',
      REGISTRATION_HELP,
      'without DATABASE_URL it runs on an embedded PostgreSQL in COREMACHINE_DATA_DIR (default .coremachine)',
      'exit code 0 only when the job ends COMPLETED',
    ],
  },
  dev: {
    synopsis: 'dev [--port 7071] [--host 127.0.0.1] [--no-migrate] [--registration M]',
    meaning: 'serve the HTTP API + dashboard with local workers',
    options: { ...HELP, port: { type: 'string' }, host: { type: 'string' }, 'no-migrate': { type: 'boolean' }, registration: { type: 'string' } },
    positionals: [],
    help: [
      REGISTRATION_HELP,
      '--port N        port to listen on (default $PORT or 7071)',
      '--host H        address to bind (default 127.0.0.1). Only loopback Host names are served unless',
      '                you bind elsewhere on purpose (e.g. --host 0.0.0.0: any Host, with a warning)',
      '--no-migrate    do not apply pending migrations on start (refuse a mismatched schema instead)',
      'COREMACHINE_FUNCTION_KEY, when set, is required on every route but health (x-functions-key or ?code=)',
    ],
  },
  db: {
    synopsis: 'db migrate|status|versions [--registration M]',
    meaning: 'apply pending schema migrations | show schema version | check job versions in use',
    options: { ...HELP, registration: { type: 'string' } },
    positionals: ['migrate|status|versions'],
    help: [
      'migrate   apply pending migrations (safe to run from several processes at once)',
      'status    the schema version of the database vs the one this CoreMachine needs',
      'versions  the job type versions unfinished jobs run, against the registration about to be deployed;',
      '          exit code 1 when an active job runs a version it no longer registers (the predeploy check)',
      REGISTRATION_HELP,
    ],
  },
  doctor: {
    synopsis: 'doctor [--profile NAME] [--infra DIR]',
    meaning: "check the Azure deployment's connection budget before provisioning (no database needed)",
    options: { ...HELP, profile: { type: 'string' }, infra: { type: 'string' } },
    positionals: [],
    help: [
      '--profile NAME  the database profile of infra/main.bicep (default: COREMACHINE_DATABASE_PROFILE, as azd fills it)',
      "--infra DIR     the folder with main.bicep and main.parameters.json (default: ./infra when it has them, else the package's infra/)",
      'reads PG_POOL_MAX, COREMACHINE_MAXIMUM_INSTANCE_COUNT and COREMACHINE_ALWAYS_READY_* as azd passes them to the Bicep',
      'exit code 1 when the scale groups × instances × pool do not fit the server, or a setting is out of bounds',
    ],
  },
  init: {
    synopsis: 'init <dir> [--package SPEC] [--name NAME]',
    meaning: 'create a new Functions app that depends on coremachine',
    options: { ...HELP, package: { type: 'string' }, name: { type: 'string' } },
    positionals: ['dir'],
    help: [
      '<dir>           an empty or new folder; nothing outside it is touched',
      "--package SPEC  the app's dependency on coremachine (default ^<this version>), e.g. file:../coremachine-0.1.0.tgz",
      "--name NAME     the app's package name (default: the folder's name)",
      'then: cd <dir> && npm install && npm test && npm run dev',
    ],
  },
  package: {
    synopsis: 'package [--out DIR]',
    meaning: "bundle the app's Functions entry point into the deployment artifact azd uploads",
    options: { ...HELP, out: { type: 'string' } },
    positionals: [],
    help: [
      '--out DIR       where the artifact goes (default dist/deploy, and dist/deploy.zip beside it)',
      'the entry point is package.json "coremachine.functions" (default src/functions/index.ts)',
    ],
  },
  infra: {
    synopsis: 'infra sync|check [--dir infra] [--force]',
    meaning: "update the app's Bicep from the installed coremachine | say whether it differs",
    options: { ...HELP, dir: { type: 'string' }, force: { type: 'boolean' } },
    positionals: ['sync|check'],
    help: [
      'sync    copy the Bicep modules, main.bicep and the azd hooks of this coremachine into the app;',
      '        files changed in the app since the last sync are kept, and named, unless --force',
      "        (main.parameters.json is the app's own: written only when missing)",
      "check   exit 1 when the app's copy is not the one this coremachine ships",
      "--dir   the app's infra folder (default infra)",
    ],
  },
} satisfies Record<string, LocalCommand>;

export type LocalCommandName = keyof typeof LOCAL_COMMANDS;

export function localUsage(command: LocalCommandName): string {
  const spec: LocalCommand = LOCAL_COMMANDS[command];
  return [`usage: coremachine ${spec.synopsis}`, `  ${spec.meaning}`, ...spec.help.map((line) => `  ${line}`)].join('\n');
}

export interface LocalArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Strict parsing: an unknown flag, a missing value or a stray argument is a UsageError (exit 2). */
export function parseLocalArgs(command: LocalCommandName, args: readonly string[]): LocalArgs {
  const spec: LocalCommand = LOCAL_COMMANDS[command];
  let parsed: { values: Record<string, string | boolean | Array<string | boolean> | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...args], options: spec.options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const values: LocalArgs['values'] = {};
  for (const [key, value] of Object.entries(parsed.values)) values[key] = Array.isArray(value) ? value[value.length - 1] : value;
  if (values.help !== true && parsed.positionals.length !== spec.positionals.length) {
    throw new UsageError(`unexpected arguments: ${parsed.positionals.map((p) => JSON.stringify(p)).join(' ') || 'none given'}`);
  }
  return { values, positionals: parsed.positionals };
}

/** An integer port 0–65535 (0: any free port), or a UsageError naming where it came from. */
export function parsePort(text: string, where: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`${where} must be a port number 0–65535, got ${JSON.stringify(text)}`);
  return port;
}
