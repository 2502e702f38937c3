import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, USAGE, type BenchOptions } from './args';
import type { ChildMessage, RunResult, RunSpec, SystemName } from './protocol';
import { cell, jsonSummary, markdownTable, statementProfile, summarize, type Summary } from './report';
import { createDatabase, dropDatabase, listLeftovers, findServer, serverSettings, type BenchServer } from './server';
import { round } from './stats';

/**
 * `npm run bench`: CoreMachine, graphile-worker and a single-row-update ceiling on the same
 * workload (3 stages x N no-op tasks). Every run gets a fresh database and a fresh process;
 * systems are interleaved run by run so drift on the machine hits all of them alike.
 */
const STAGES = 3;
const SETUP_GRACE_MS = 60_000;

let log: (line: string) => void = (line) => process.stderr.write(`${line}\n`);
let print: (text: string) => void = (text) => process.stdout.write(`${text}\n`);

interface Active {
  child?: ChildProcess;
  database?: string;
}
const active: Active = {};

function runTimeoutMs(options: BenchOptions, n: number): number {
  return (options.timeoutS ?? 60 + (STAGES * n * 3) / 1000) * 1000;
}

async function runOne(server: BenchServer, options: BenchOptions, spec: Omit<RunSpec, 'databaseUrl' | 'databaseName' | 'adminUrl'>): Promise<RunResult> {
  const database = await createDatabase(server.adminUrl, spec.system.replace('-', '_'), options.pgSettings);
  active.database = database.name;
  try {
    const full: RunSpec = { ...spec, databaseUrl: database.url, databaseName: database.name, adminUrl: server.adminUrl };
    return await inChild(full);
  } finally {
    await dropDatabase(server.adminUrl, database.name);
    active.database = undefined;
  }
}

function inChild(spec: RunSpec): Promise<RunResult> {
  return new Promise<RunResult>((resolve, reject) => {
    const child = fork(path.join(__dirname, 'child.js'), [], { stdio: ['ignore', 2, 2, 'ipc'] });
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

function baseSpec(options: BenchOptions, system: SystemName, n: number, run: number, workers: number, batch: number) {
  return {
    system,
    n,
    stages: STAGES,
    run,
    workers,
    poolSize: options.pool ?? workers + 2,
    batchSize: batch,
    jobConcurrency: options.jobConcurrency,
    fanInFromResults: options.fanInFromResults,
    graphileLocalQueue: options.graphileLocalQueue,
    timeoutMs: runTimeoutMs(options, n),
    ceilingMaxMs: options.ceilingMaxS * 1000,
    pollMs: options.pollMs,
  };
}

function claimMs(r: RunResult): number {
  const claim = r.byStatement.find((s) => s.key === 'cm_claim_tasks');
  return claim ? claim.totalMs / claim.calls : Number.NaN;
}

function describeRun(r: RunResult): string {
  const analyzed = r.autoAnalyzedAfterMs === null ? 'not auto-analyzed' : `tasks auto-analyzed at +${round(r.autoAnalyzedAfterMs / 1000, 1)} s`;
  const extra =
    r.system === 'coremachine'
      ? `, stage create ${round(Math.max(...r.stageCreateMs), 0)} ms max, hand-overs ${r.handoverMs.map((h) => round(h, 1)).join('/')} ms, claim ${round(claimMs(r), 1)} ms avg, pg CPU ${round((r.postgresCpuMs ?? Number.NaN) / r.operations, 3)} ms/task, ${analyzed}`
      : '';
  const partial = r.operations < r.n * STAGES ? ` (${r.operations} of ${r.n * STAGES} updates: time cap)` : '';
  return `  ${r.system} N=${r.n} run ${r.run}: ${round(r.operationsPerSecond, 0)}/s in ${round(r.elapsedMs, 0)} ms${partial}${extra}, ${round(r.statements / r.operations, 2)} stmts/task, peak RSS ${round(r.peakRssMb, 0)} MB`;
}

async function benchmark(server: BenchServer, options: BenchOptions): Promise<void> {
  const workers = options.workers[0] ?? 4;
  const batch = options.batch[0] ?? 64;
  const all: RunResult[] = [];
  const failures: string[] = [];
  for (const n of options.ns) {
    for (let run = 1; run <= options.runs; run++) {
      for (const system of options.systems) {
        // A run that fails or overruns is reported and left out; the others still count.
        try {
          const result = await runOne(server, options, baseSpec(options, system, n, run, workers, batch));
          log(describeRun(result));
          all.push(result);
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          log(`  ${system} N=${n} run ${run} FAILED: ${message}`);
          failures.push(`${message.split('\n', 1)[0] ?? ''}`);
        }
      }
    }
  }

  const summaries: Summary[] = [];
  const sections: string[] = [];
  for (const n of options.ns) {
    const forN = options.systems
      .map((system) => all.filter((r) => r.n === n && r.system === system))
      .filter((results) => results.length > 0)
      .map(summarize);
    summaries.push(...forN);
    if (forN.length > 0) sections.push(markdownTable(n, forN, options.runs));
  }
  if (failures.length > 0) sections.push(['Failed runs (left out of the tables):', ...failures.map((f) => `- ${f}`)].join('\n'));
  const largest = Math.max(...options.ns);
  for (const system of ['coremachine', 'graphile-worker'] as const) {
    const runs = all.filter((r) => r.n === largest && r.system === system);
    if (runs.length > 0) sections.push(statementProfile(runs));
  }
  print(sections.join('\n\n'));

  const headline = options.ns.includes(10_000) ? 10_000 : largest;
  const json = jsonSummary(headline, summaries);
  if (options.json) {
    const perN = options.ns.map((n) => jsonSummary(n, summaries)).filter((s) => s !== undefined);
    process.stdout.write(`${JSON.stringify({ ...json, settings: { workers, batch, pool: options.pool ?? workers + 2, runs: options.runs }, perN, failures })}\n`);
  }
  if (failures.length > 0) process.exitCode = 1;
}

/** CoreMachine alone over every --workers x --batch pair: does the worker configuration matter? */
async function sweep(server: BenchServer, options: BenchOptions): Promise<void> {
  const lines = ['| N | workers | batch | pool | tasks/s | submit → COMPLETED ms | hand-over p50 ms | transactions / task | node CPU ms / task | pg CPU ms / task |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'];
  const rows: Array<Record<string, number>> = [];
  for (const n of options.ns) {
    for (const workers of options.workers) {
      for (const batch of options.batch) {
        const results: RunResult[] = [];
        for (let run = 1; run <= options.runs; run++) {
          try {
            const result = await runOne(server, options, baseSpec(options, 'coremachine', n, run, workers, batch));
            log(`${describeRun(result)} [workers ${workers}, batch ${batch}]`);
            results.push(result);
          } catch (error) {
            log(`  coremachine N=${n} run ${run} [workers ${workers}, batch ${batch}] FAILED: ${error instanceof Error ? error.message : String(error)}`);
          }
        }
        if (results.length === 0) {
          lines.push(`| ${n} | ${workers} | ${batch} | ${options.pool ?? workers + 2} | failed | | | | | |`);
          continue;
        }
        const s = summarize(results);
        lines.push(
          `| ${n} | ${workers} | ${batch} | ${options.pool ?? workers + 2} | ${cell(s.operationsPerSecond)} | ${cell(s.elapsedMs)} | ${cell(s.handoverP50Ms)} | ${cell(s.transactionsPerTask)} | ${cell(s.nodeCpuMsPerTask)} | ${cell(s.postgresCpuMsPerTask)} |`,
        );
        rows.push({ n, workers, batch, tasksPerSecond: round(s.operationsPerSecond.median, 1), transactionsPerTask: round(s.transactionsPerTask.median, 3) });
      }
    }
  }
  print(lines.join('\n'));
  if (options.json) process.stdout.write(`${JSON.stringify({ sweep: rows })}\n`);
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (options.json) {
    print = (text) => process.stderr.write(`${text}\n`);
    log = (line) => process.stderr.write(`${line}\n`);
  }
  const server = await findServer(log);
  const stopOnSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping`);
    active.child?.kill('SIGKILL');
    const drop = active.database ? dropDatabase(server.adminUrl, active.database) : Promise.resolve();
    void drop
      .catch(() => undefined)
      .then(() => server.stop())
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  try {
    const leftovers = await listLeftovers(server.adminUrl);
    if (leftovers.length > 0) log(`note: bench databases left by a killed earlier run (drop them by hand): ${leftovers.join(', ')}`);
    const settings = await serverSettings(server.adminUrl);
    const workers = options.workers.join(',');
    print(
      [
        `# CoreMachine benchmark — 3 stages x N no-op tasks`,
        '',
        `PostgreSQL ${settings.server_version ?? '?'} (${server.origin}); fsync=${settings.fsync ?? '?'}, synchronous_commit=${options.pgSettings.synchronous_commit ?? settings.synchronous_commit ?? '?'}, wal_sync_method=${settings.wal_sync_method ?? '?'}, shared_buffers=${settings.shared_buffers ?? '?'}; pg_stat_statements ${String(settings.shared_preload_libraries).includes('pg_stat_statements') ? 'preloaded (statements still counted client-side)' : 'not preloaded: statements counted client-side'}.`,
        `Machine: ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')} at start${(os.loadavg()[0] ?? 0) > 1 ? ' — WARNING: the machine is busy; numbers will be disturbed' : ''}.`,
        `Node ${process.version}; workers=${workers} (CoreMachine task batches in flight = graphile-worker concurrency = ceiling clients), CoreMachine batch=${options.batch.join(',')}, pool=${options.pool ?? `workers + 2`}, job consumers=${options.jobConcurrency}, fan-in from results=${String(options.fanInFromResults)}, graphile localQueue=${options.graphileLocalQueue > 1 ? options.graphileLocalQueue : 'off'}; bench database settings: ${Object.entries(options.pgSettings).map(([k, v]) => `${k}=${v}`).join(', ') || 'server defaults'}; ${options.runs} runs each, fresh database and process per run.`,
        '',
      ].join('\n'),
    );
    if (options.sweep) await sweep(server, options);
    else await benchmark(server, options);
  } finally {
    await server.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
