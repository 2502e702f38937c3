import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { BenchOptions } from './args';
import type { ChildMessage, GraphileSettings, PgBossSettings, RunResult, RunSpec, SystemName } from './protocol';
import { createDatabase, dropDatabase, type BenchServer } from './server';
import { round } from './stats';

/** One run = a fresh database + a forked child process (child.ts); shared by every bench mode. */
/** The default stages per job (--stages). */
export const STAGES = 3;
const SETUP_GRACE_MS = 60_000;

export interface Active {
  child?: ChildProcess;
  database?: string;
  /** A service the orchestrator started for the bench (Azurite): stopped on SIGINT/SIGTERM too. */
  service?: { stop(): Promise<void> };
}
export const active: Active = {};

export function runTimeoutMs(options: BenchOptions, n: number): number {
  return (options.timeoutS ?? 60 + (options.stages * n * 3) / 1000) * 1000;
}

export async function runOne(
  server: BenchServer,
  options: BenchOptions,
  spec: BaseSpec,
  prepare?: (databaseUrl: string) => Partial<RunSpec>,
): Promise<RunResult> {
  const database = await createDatabase(server.adminUrl, spec.system.replace(/-/g, '_'), options.pgSettings);
  active.database = database.name;
  try {
    const full: RunSpec = { ...spec, databaseUrl: database.url, databaseName: database.name, adminUrl: server.adminUrl, ...prepare?.(database.url) };
    return await inChild(full);
  } finally {
    await dropDatabase(server.adminUrl, database.name);
    active.database = undefined;
  }
}

function inChild(spec: RunSpec): Promise<RunResult> {
  return new Promise<RunResult>((resolve, reject) => {
    const child = fork(path.join(__dirname, 'child.js'), [], {
      stdio: ['ignore', 2, 2, 'ipc'],
      // gc() exposed for one full collection after the run, to measure what stays referenced
      // (bench/child.ts): exposing it changes no collection made during the run.
      execArgv: [...process.execArgv, '--expose-gc'],
    });
    active.child = child;
    let settled = false;
    const finish = (error: Error | undefined, result?: RunResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      active.child = undefined;
      if (error) reject(error);
      else if (result) resolve(result);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new Error(`${spec.system} N=${spec.n} run ${spec.run} exceeded ${spec.timeoutMs + SETUP_GRACE_MS} ms; killed`));
    }, spec.timeoutMs + SETUP_GRACE_MS);
    child.once('message', (raw) => {
      const message = raw as ChildMessage;
      if (message.kind === 'result') finish(undefined, message.result);
      else finish(new Error(`${spec.system} N=${spec.n} run ${spec.run}: ${message.message}\n${message.stack ?? ''}`));
    });
    child.once('exit', (code, signal) => finish(new Error(`${spec.system} child exited (${String(code ?? signal)}) without a result`)));
    child.once('error', (error) => finish(error));
    child.send(spec);
  });
}

/** Settings of the peers for one run: the flags' values, or what --peer-sweep found best. */
export interface PeerSettings {
  graphile: GraphileSettings;
  pgBoss: PgBossSettings;
}

export type BaseSpec = Omit<RunSpec, 'databaseUrl' | 'databaseName' | 'adminUrl'>;

/**
 * Each system gets the pool it needs at its own setting (`--pool` overrides all): CoreMachine
 * workers + 2, the ceiling its clients + 2, graphile-worker its concurrency + 2, pg-boss its workers + 2.
 */
export function baseSpec(
  options: BenchOptions,
  system: SystemName,
  n: number,
  run: number,
  workers: number,
  batch: number,
  peers: PeerSettings = options,
): BaseSpec {
  // The ceiling's clients are its own setting: at CoreMachine's batches in flight it would queue more on its row lock.
  const inFlight = system === 'ceiling' ? options.ceilingClients : workers;
  const poolFor = system === 'graphile-worker' ? peers.graphile.concurrency + 2 : system === 'pg-boss' ? peers.pgBoss.workers + 2 : inFlight + 2;
  return {
    system,
    n,
    stages: options.stages,
    run,
    workers: inFlight,
    poolSize: options.pool ?? poolFor,
    batchSize: batch,
    jobConcurrency: options.jobConcurrency,
    fanInFromResults: options.fanInFromResults,
    ...(options.maxPackedTasks === undefined ? {} : { maxPackedTasks: options.maxPackedTasks }),
    graphile: peers.graphile,
    pgBoss: peers.pgBoss,
    timeoutMs: runTimeoutMs(options, n),
    ceilingMaxMs: options.ceilingMaxS * 1000,
    pollMs: options.pollMs,
  };
}

function claimMs(r: RunResult): number {
  const claim = r.byStatement.find((s) => s.key === (r.system === 'coremachine-fair' ? 'cm_claim_fair_tasks' : 'cm_claim_tasks'));
  return claim ? claim.totalMs / claim.calls : Number.NaN;
}

export function describeRun(r: RunResult): string {
  const analyzed = r.autoAnalyzedAfterMs === null ? 'not auto-analyzed' : `tasks auto-analyzed at +${round(r.autoAnalyzedAfterMs / 1000, 1)} s`;
  const extra =
    r.system === 'coremachine' || r.system === 'coremachine-fair'
      ? `, stage create ${round(Math.max(...r.stageCreateMs), 0)} ms max, hand-overs ${r.handoverMs.map((h) => round(h, 1)).join('/')} ms, claim ${round(claimMs(r), 1)} ms avg, HOT ${r.taskHotUpdateShare === null ? '?' : `${round(r.taskHotUpdateShare * 100, 0)}%`} of task updates, pg CPU ${round((r.postgresCpuMs ?? Number.NaN) / r.operations, 3)} ms/task, ${analyzed}`
      : '';
  const settings = r.settings
    ? ` [${Object.entries(r.settings)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}]`
    : '';
  const partial = r.operations < r.n * r.stages ? ` (${r.operations} of ${r.n * r.stages} done${r.system === 'ceiling' ? ': time cap' : ''})` : '';
  const notes = r.notes.length > 0 ? `; ${r.notes.join('; ')}` : '';
  return `  ${r.system} N=${r.n} run ${r.run}: ${round(r.operationsPerSecond, 0)}/s in ${round(r.elapsedMs, 0)} ms${partial}${extra}, ${round(r.statements / r.operations, 2)} stmts/task, peak RSS ${round(r.peakRssMb, 0)} MB${r.liveHeapMb === null ? '' : `, live heap after ${round(r.liveHeapMb, 0)} MB`}${settings}${notes}`;
}
