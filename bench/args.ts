import type { SystemName } from './protocol';

export interface BenchOptions {
  ns: number[];
  runs: number;
  /** Lists only in --sweep mode; otherwise one value each. */
  workers: number[];
  batch: number[];
  pool: number | undefined;
  jobConcurrency: number;
  systems: SystemName[];
  fanInFromResults: boolean;
  graphileLocalQueue: number;
  /** Settings applied with ALTER DATABASE to every bench database (--sync-commit, --pg-set). */
  pgSettings: Record<string, string>;
  timeoutS: number | undefined;
  ceilingMaxS: number;
  pollMs: number;
  json: boolean;
  sweep: boolean;
  help: boolean;
}

export const USAGE = `npm run bench -- [options]

  --n LIST               tasks per stage, e.g. --n 100000 or --n 1000,10000 (default 1000,10000)
  --runs R               runs per N and system, each in a fresh database and process (default 3)
  --workers W            CoreMachine task batches in flight = graphile-worker concurrency =
                         ceiling clients (default 4)
  --batch B              CoreMachine task messages per batch (default 64)
  --pool P               pg pool size for every system (default W + 2)
  --job-concurrency J    CoreMachine job-message consumers (default 1)
  --systems LIST         coremachine,graphile-worker,ceiling (default all three)
  --fan-in               stages 2 and 3 build their tasks from the previous stage's results
  --graphile-local-queue S  graphile-worker localQueue size with batched completion (default off)
  --sync-commit on|off   set synchronous_commit on the bench databases (default: server setting)
  --pg-set name=value    any other per-database setting, e.g. --pg-set enable_hashjoin=off (repeatable)
  --timeout-s S          per-run time limit (default 60 + 3N x 3 ms)
  --ceiling-max-s S      the ceiling stops after 3N updates or S seconds, whichever first (default 10)
  --poll-ms MS           completion poll interval (default 5)
  --sweep                CoreMachine only, every --workers x --batch pair (both take lists)
  --json                 progress and tables to stderr; stdout is one JSON line
`;

function positiveInts(flag: string, value: string | undefined): number[] {
  if (value === undefined) throw new Error(`${flag} needs a value`);
  const list = value.split(',').map((part) => Number(part.replace(/_/g, '')));
  if (list.some((v) => !Number.isInteger(v) || v < 1)) throw new Error(`${flag} takes positive integers, got "${value}"`);
  return list;
}

function one(flag: string, value: string | undefined): number {
  const list = positiveInts(flag, value);
  if (list.length !== 1) throw new Error(`${flag} takes one value`);
  return list[0] as number;
}

const SYSTEMS: readonly SystemName[] = ['coremachine', 'graphile-worker', 'ceiling'];

export function parseArgs(argv: readonly string[]): BenchOptions {
  const options: BenchOptions = {
    ns: [],
    runs: 3,
    workers: [4],
    batch: [64],
    pool: undefined,
    jobConcurrency: 1,
    systems: [...SYSTEMS],
    fanInFromResults: false,
    graphileLocalQueue: -1,
    pgSettings: {},
    timeoutS: undefined,
    ceilingMaxS: 10,
    pollMs: 5,
    json: false,
    sweep: false,
    help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i] ?? '';
    const [flag, inline] = raw.includes('=') ? (raw.split('=', 2) as [string, string]) : [raw, undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--n':
        options.ns.push(...positiveInts(flag, value()));
        break;
      case '--runs':
        options.runs = one(flag, value());
        break;
      case '--workers':
        options.workers = positiveInts(flag, value());
        break;
      case '--batch':
        options.batch = positiveInts(flag, value());
        break;
      case '--pool':
        options.pool = one(flag, value());
        break;
      case '--job-concurrency':
        options.jobConcurrency = one(flag, value());
        break;
      case '--systems': {
        const list = (value() ?? '').split(',').filter(Boolean);
        const unknown = list.filter((name) => !SYSTEMS.includes(name as SystemName));
        if (unknown.length > 0 || list.length === 0) throw new Error(`--systems takes ${SYSTEMS.join(',')}; got "${list.join(',')}"`);
        options.systems = list as SystemName[];
        break;
      }
      case '--fan-in':
        options.fanInFromResults = true;
        break;
      case '--graphile-local-queue':
        options.graphileLocalQueue = one(flag, value());
        break;
      case '--sync-commit': {
        const setting = value();
        if (setting !== 'on' && setting !== 'off') throw new Error('--sync-commit takes on or off');
        options.pgSettings.synchronous_commit = setting;
        break;
      }
      case '--pg-set': {
        const setting = value() ?? '';
        const match = /^([a-z_][a-z0-9_.]*)=(.+)$/.exec(setting);
        if (!match?.[1] || match[2] === undefined) throw new Error(`--pg-set takes name=value, got "${setting}"`);
        options.pgSettings[match[1]] = match[2];
        break;
      }
      case '--timeout-s':
        options.timeoutS = one(flag, value());
        break;
      case '--ceiling-max-s':
        options.ceilingMaxS = one(flag, value());
        break;
      case '--poll-ms':
        options.pollMs = one(flag, value());
        break;
      case '--json':
        options.json = true;
        break;
      case '--sweep':
        options.sweep = true;
        break;
      case '--help':
      case '-h':
        options.help = true;
        break;
      default:
        throw new Error(`unknown option "${raw}"\n\n${USAGE}`);
    }
  }
  if (options.ns.length === 0) options.ns = [1000, 10_000];
  if (!options.sweep && (options.workers.length > 1 || options.batch.length > 1)) {
    throw new Error('--workers and --batch take lists only with --sweep');
  }
  return options;
}
