import type { GraphileSettings, PgBossSettings, SystemName } from './protocol';

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
  /** --stages: stages per job, 1-3 (every system runs the same count). */
  stages: number;
  /** graphile-worker settings when --peer-sweep is off (and the sweep's fallback). */
  graphile: GraphileSettings;
  pgBoss: PgBossSettings;
  /** Sweep each peer's settings at --peer-sweep-n first, then run the best at full N. */
  peerSweep: boolean;
  peerSweepN: number;
  /** --instances: K engines sharing one transport (empty = the normal benchmark). */
  instances: number[];
  poolPerInstance: number | undefined;
  /** Scale runs: straight to PostgreSQL, through PgBouncer, or both (default when installed). */
  pgBouncer: 'both' | 'only' | 'off';
  pgBouncerPoolSize: number;
  /** Scale runs: terminate one engine backend every this many ms (0 = off). */
  killEveryMs: number;
  /** --scale-only: the --instances table without the side-by-side comparison. */
  scaleOnly: boolean;
  /** --result-bytes: CoreMachine alone, tasks returning results of these sizes (bench/payload-bench.ts). */
  resultBytes: number[];
  /** With --result-bytes: results inline in PostgreSQL, in a payload store (Azurite), or both side by side. */
  payloadStore: 'none' | 'azurite' | 'both';
  /** With --result-bytes and a store: values larger than this go to it (default 256: every result, no task spec). */
  payloadInlineMax: number;
  /** Settings applied with ALTER DATABASE to every bench database (--sync-commit, --pg-set). */
  pgSettings: Record<string, string>;
  timeoutS: number | undefined;
  ceilingMaxS: number;
  /** Clients of the one-row UPDATE ceiling: its own best, apart from CoreMachine's batches in flight. */
  ceilingClients: number;
  pollMs: number;
  json: boolean;
  sweep: boolean;
  /** --capacity: measure CoreMachine's per-task costs, store them, and regenerate docs/deploying.md's capacity table (bench/capacity.ts). */
  capacity: boolean;
  /** --capacity-stored: regenerate that table from the stored costs, without running anything. */
  capacityStored: boolean;
  /** CoreMachine task messages per Service Bus message at most (1 = unpacked; unset = the transport's default). */
  maxPackedTasks: number | undefined;
  help: boolean;
}

export const USAGE = `npm run bench -- [options]

  --n LIST               tasks per stage, e.g. --n 100000 or --n 1000,10000 (default 1000,10000)
  --runs R               runs per N and system, each in a fresh database and process (default 3)
  --workers W            CoreMachine task batches in flight (per instance with --instances)
                         (default 4); the peers have their own flags below
  --batch B              CoreMachine task messages per batch (default 256)
  --ceiling-clients C    clients of the one-row UPDATE ceiling (default 4: its best of 1, 2, 4,
                         8, 16 on the 2-core machine; more clients only queue on the row's lock)
  --pool P               pg pool size for every system (default W + 2; the ceiling C + 2;
                         graphile-worker concurrency + 2; pg-boss workers + 2)
  --job-concurrency J    CoreMachine job-message consumers (default 1)
  --systems LIST         coremachine,graphile-worker,pg-boss,ceiling (default all four); coremachine-fair
                         is CoreMachine with every job under one fairness key (the scheme's cost)
  --fan-in               stages 2 and 3 build their tasks from the previous stage's results
  --stages S             stages per job, 1-3 (default 3): --n 1000000 --stages 1 is one stage of a million
  --graphile-concurrency C      graphile-worker concurrency (default 2)
  --graphile-local-queue S      graphile-worker preset.worker.localQueue.size, 0 = off (default 500)
  --graphile-complete-delay MS  graphile-worker completeJobBatchDelay, -1 = off (default 250)
  --pgboss-workers K     pg-boss work() registrations (default 1)
  --pgboss-batch B       pg-boss work() batchSize (default 1000)
  --peer-sweep           first sweep graphile-worker (concurrency 1,2,4,8 x localQueue off,500 x
                         completeJobBatchDelay 0,250) and pg-boss (workers 1,2,4 x batchSize
                         50,200,1000) at --peer-sweep-n, once each; then run the best at full N
  --peer-sweep-n N       N for the sweep runs (default 1000)
  --instances LIST       scale mode: K CoreMachine instances in one process, one pool each, one
                         shared queue, e.g. --instances 1,4,16,32 (CoreMachine only)
  --pool-per-instance P  pool size of each instance (default 2 for K >= 16, else --pool)
  --via-pgbouncer        scale mode: only through PgBouncer (transaction mode)
  --no-pgbouncer         scale mode: only straight to PostgreSQL
                         (default: both when pgbouncer is installed, else straight only)
  --pgbouncer-pool-size S  PgBouncer default_pool_size (default 20)
  --scale-only           with --instances: skip the side-by-side comparison
  --kill-every-ms MS     scale runs: terminate one engine backend every MS ms (fault injection)
  --result-bytes LIST    payload mode: CoreMachine alone, 3 stages of tasks returning results of
                         these sizes, e.g. --result-bytes 1024,102400,5242880; N per stage is
                         capped so a stage holds ~200 MB (bench/payload-bench.ts)
  --payload-store S      payload mode: none (results inline in PostgreSQL), azurite (in a payload
                         store on an Azurite started for the run) or both (default)
  --payload-inline-max B payload mode, with a store: values larger than B bytes go to it (default
                         256: every result, while the tasks' ~30-byte specs stay inline)
  --sync-commit on|off   set synchronous_commit on the bench databases (default: server setting)
  --pg-set name=value    any other per-database setting, e.g. --pg-set enable_hashjoin=off (repeatable)
  --timeout-s S          per-run time limit (default 60 + 3N x 3 ms)
  --ceiling-max-s S      the ceiling stops after 3N updates or S seconds, whichever first (default 10)
  --poll-ms MS           completion poll interval (default 5)
  --sweep                CoreMachine only, every --workers x --batch pair (both take lists)
  --max-packed-tasks K   CoreMachine: at most K task messages per queue message (1 = no packing;
                         default: the transport's)
  --capacity             CoreMachine alone at the largest --n: store its per-task costs in
                         bench/capacity-costs.json and regenerate the capacity table in
                         docs/deploying.md (limits and prices: bench/capacity-limits.ts)
  --capacity-stored      regenerate that table from bench/capacity-costs.json; runs nothing
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

const SYSTEMS: readonly SystemName[] = ['coremachine', 'coremachine-fair', 'graphile-worker', 'pg-boss', 'ceiling'];

function integer(flag: string, value: string | undefined, min: number): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min) throw new Error(`${flag} takes an integer >= ${min}, got "${String(value)}"`);
  return parsed;
}

export function parseArgs(argv: readonly string[]): BenchOptions {
  const options: BenchOptions = {
    ns: [],
    runs: 3,
    // The best of interleaved runs since task messages are packed (bench/README.md): 4 x 256.
    workers: [4],
    batch: [256],
    pool: undefined,
    jobConcurrency: 1,
    // The four compared systems; coremachine-fair is asked for by name (--systems).
    systems: SYSTEMS.filter((system) => system !== 'coremachine-fair'),
    fanInFromResults: false,
    stages: 3,
    graphile: { concurrency: 2, localQueueSize: 500, completeJobBatchDelayMs: 250 },
    // The best of the last --peer-sweep (bench/README.md, Results): 1 registration x batchSize 1000.
    pgBoss: { workers: 1, batchSize: 1000 },
    peerSweep: false,
    peerSweepN: 1000,
    instances: [],
    poolPerInstance: undefined,
    pgBouncer: 'both',
    pgBouncerPoolSize: 20,
    scaleOnly: false,
    killEveryMs: 0,
    pgSettings: {},
    resultBytes: [],
    payloadStore: 'both',
    payloadInlineMax: 256,
    timeoutS: undefined,
    ceilingMaxS: 10,
    ceilingClients: 4,
    pollMs: 5,
    json: false,
    sweep: false,
    capacity: false,
    capacityStored: false,
    maxPackedTasks: undefined,
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
      case '--stages':
        options.stages = integer(flag, value(), 1);
        if (options.stages > 3) throw new Error('--stages takes 1, 2 or 3');
        break;
      case '--graphile-concurrency':
        options.graphile.concurrency = one(flag, value());
        break;
      case '--graphile-local-queue': {
        const size = integer(flag, value(), 0);
        options.graphile.localQueueSize = size === 0 ? -1 : size;
        break;
      }
      case '--graphile-complete-delay':
        options.graphile.completeJobBatchDelayMs = integer(flag, value(), -1);
        break;
      case '--pgboss-workers':
        options.pgBoss.workers = one(flag, value());
        break;
      case '--pgboss-batch':
        options.pgBoss.batchSize = one(flag, value());
        break;
      case '--peer-sweep':
        options.peerSweep = true;
        break;
      case '--peer-sweep-n':
        options.peerSweepN = one(flag, value());
        break;
      case '--instances':
        options.instances = positiveInts(flag, value());
        break;
      case '--pool-per-instance':
        options.poolPerInstance = one(flag, value());
        break;
      case '--via-pgbouncer':
        options.pgBouncer = 'only';
        break;
      case '--no-pgbouncer':
        options.pgBouncer = 'off';
        break;
      case '--kill-every-ms':
        options.killEveryMs = integer(flag, value(), 0);
        break;
      case '--scale-only':
        options.scaleOnly = true;
        options.systems = [];
        break;
      case '--pgbouncer-pool-size':
        options.pgBouncerPoolSize = one(flag, value());
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
      case '--result-bytes':
        options.resultBytes = positiveInts(flag, value());
        break;
      case '--payload-store': {
        const store = value();
        if (store !== 'none' && store !== 'azurite' && store !== 'both') throw new Error('--payload-store takes none, azurite or both');
        options.payloadStore = store;
        break;
      }
      case '--payload-inline-max':
        options.payloadInlineMax = integer(flag, value(), 0);
        break;
      case '--timeout-s':
        options.timeoutS = one(flag, value());
        break;
      case '--ceiling-max-s':
        options.ceilingMaxS = one(flag, value());
        break;
      case '--ceiling-clients':
        options.ceilingClients = one(flag, value());
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
      case '--capacity':
        options.capacity = true;
        break;
      case '--capacity-stored':
        options.capacityStored = true;
        break;
      case '--max-packed-tasks':
        options.maxPackedTasks = one(flag, value());
        break;
      case '--help':
      case '-h':
        options.help = true;
        break;
      default:
        throw new Error(`unknown option "${raw}"\n\n${USAGE}`);
    }
  }
  // Payload mode: N = 1,000 unless told, capped per result size (bench/payload-bench.ts).
  if (options.ns.length === 0) options.ns = options.resultBytes.length > 0 ? [1000] : [1000, 10_000];
  if (options.scaleOnly && options.instances.length === 0) throw new Error('--scale-only needs --instances');
  if (!options.sweep && (options.workers.length > 1 || options.batch.length > 1)) {
    throw new Error('--workers and --batch take lists only with --sweep');
  }
  return options;
}
