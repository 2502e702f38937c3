import os from 'node:os';
import { parseArgs, USAGE, type BenchOptions } from './args';
import { describePeers, sweepPeers, type PeerChoice } from './peer-sweep';
import type { RunResult } from './protocol';
import { cell, jsonSummary, markdownTable, statementProfile, summarize, type Summary } from './report';
import { active, baseSpec, describeRun, runOne } from './runner';
import { scaleBenchmark, type ScaleRow } from './scale';
import { payloadBenchmark } from './payload-bench';
import { measureCapacity, readCosts, updateCapacityDocs, writeCosts } from './capacity';
import { dropDatabase, listLeftovers, findServer, serverSettings, type BenchServer } from './server';
import { round } from './stats';

/**
 * `npm run bench`: CoreMachine, graphile-worker, pg-boss and a single-row-update ceiling on the
 * same workload (3 stages x N no-op tasks). Every run gets a fresh database and a fresh process;
 * systems are interleaved run by run so drift on the machine hits all of them alike. Optional:
 * --peer-sweep (each peer at its best settings first), --instances (many engines, one database).
 */

let log: (line: string) => void = (line) => process.stderr.write(`${line}\n`);
let print: (text: string) => void = (text) => process.stdout.write(`${text}\n`);

async function benchmark(server: BenchServer, options: BenchOptions): Promise<void> {
  const workers = options.workers[0] ?? 4;
  const batch = options.batch[0] ?? 64;
  const all: RunResult[] = [];
  const failures: string[] = [];
  const sections: string[] = [];
  let peers: PeerChoice = { graphile: options.graphile, pgBoss: options.pgBoss, swept: { graphile: false, pgBoss: false }, table: '' };
  if (options.peerSweep && options.systems.some((system) => system === 'graphile-worker' || system === 'pg-boss')) {
    peers = await sweepPeers(server, options, log);
    sections.push(peers.table);
  }
  if (options.systems.some((system) => system === 'graphile-worker' || system === 'pg-boss')) sections.push(`Peer settings — ${describePeers(peers)}.`);
  for (const n of options.ns) {
    for (let run = 1; run <= options.runs; run++) {
      for (const system of options.systems) {
        // A run that fails or overruns is reported and left out; the others still count.
        try {
          const result = await runOne(server, options, baseSpec(options, system, n, run, workers, batch, peers));
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
  for (const system of ['coremachine', 'graphile-worker', 'pg-boss'] as const) {
    const runs = all.filter((r) => r.n === largest && r.system === system);
    if (runs.length > 0) sections.push(statementProfile(runs));
  }
  let scale: ScaleRow[] | undefined;
  if (options.instances.length > 0) {
    const result = await scaleBenchmark(server, options, log);
    scale = result.rows;
    sections.push(result.table);
  }
  print(sections.join('\n\n'));

  const headline = options.ns.includes(10_000) ? 10_000 : largest;
  const json = jsonSummary(headline, summaries, peers);
  if (options.json) {
    const perN = options.ns.map((n) => jsonSummary(n, summaries, peers)).filter((s) => s !== undefined);
    const settings = { workers, batch, pool: options.pool ?? workers + 2, runs: options.runs, peersSwept: peers.swept };
    process.stdout.write(`${JSON.stringify({ ...json, settings, perN, ...(scale ? { scale } : {}), failures })}\n`);
  }
  if (failures.length > 0) process.exitCode = 1;
}

/** --result-bytes: CoreMachine alone, results of each size inline and in a payload store (bench/payload-bench.ts). */
async function payloads(server: BenchServer, options: BenchOptions): Promise<void> {
  const { rows, table } = await payloadBenchmark(server, options, log);
  print(table);
  if (options.json) process.stdout.write(`${JSON.stringify({ payloads: rows })}\n`);
}

/** --capacity: measure, store the per-task costs, regenerate docs/deploying.md's capacity table (bench/capacity.ts). */
async function capacity(server: BenchServer, options: BenchOptions): Promise<void> {
  const costs = await measureCapacity(server, options, log);
  writeCosts(costs);
  print(updateCapacityDocs(costs));
  log('wrote bench/capacity-costs.json and the capacity section of docs/deploying.md');
  if (options.json) process.stdout.write(`${JSON.stringify({ capacity: costs })}\n`);
}

/** CoreMachine alone over every --workers x --batch pair: does the worker configuration matter? */
async function sweep(server: BenchServer, options: BenchOptions): Promise<void> {
  const lines = [
    '| N | workers | batch | pool | tasks/s | submit → COMPLETED ms | hand-over p50 ms | transactions / task | node CPU ms / task | pg CPU ms / task |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
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
  if (options.capacityStored) {
    print(updateCapacityDocs(readCosts()));
    log('rewrote the capacity section of docs/deploying.md from bench/capacity-costs.json');
    return;
  }
  const server = await findServer(log);
  const stopOnSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping`);
    active.child?.kill('SIGKILL');
    const drop = Promise.all([active.database ? dropDatabase(server.adminUrl, active.database) : undefined, active.service?.stop()]);
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
        `# CoreMachine benchmark — ${options.stages} stage${options.stages === 1 ? '' : 's'} x N no-op tasks`,
        '',
        `PostgreSQL ${settings.server_version ?? '?'} (${server.origin}); fsync=${settings.fsync ?? '?'}, synchronous_commit=${options.pgSettings.synchronous_commit ?? settings.synchronous_commit ?? '?'}, wal_sync_method=${settings.wal_sync_method ?? '?'}, shared_buffers=${settings.shared_buffers ?? '?'}; pg_stat_statements ${String(settings.shared_preload_libraries).includes('pg_stat_statements') ? 'preloaded (statements still counted client-side)' : 'not preloaded: statements counted client-side'}.`,
        `Machine: ${os.cpus().length} CPUs, load average ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' / ')} at start${(os.loadavg()[0] ?? 0) > 1 ? ' — WARNING: the machine is busy; numbers will be disturbed' : ''}.`,
        `Node ${process.version}; workers=${workers} (CoreMachine task batches in flight), ceiling clients=${options.ceilingClients}, CoreMachine batch=${options.batch.join(',')}, pool=${options.pool ?? `workers + 2 (graphile-worker: concurrency + 2, pg-boss: workers + 2)`}, job consumers=${options.jobConcurrency}, fan-in from results=${String(options.fanInFromResults)}${options.instances.length > 0 ? `, instances=${options.instances.join(',')}` : ''}; bench database settings: ${
          Object.entries(options.pgSettings)
            .map(([k, v]) => `${k}=${v}`)
            .join(', ') || 'server defaults'
        }; ${options.runs} runs each, fresh database and process per run.`,
        '',
      ].join('\n'),
    );
    if (options.capacity) await capacity(server, options);
    else if (options.sweep) await sweep(server, options);
    else if (options.resultBytes.length > 0) await payloads(server, options);
    else await benchmark(server, options);
  } finally {
    await server.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
