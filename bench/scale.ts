import type { BenchOptions } from './args';
import { findPgBouncer, startPgBouncer, type BenchBouncer } from './pgbouncer';
import type { RunResult, ScaleMeasures } from './protocol';
import { baseSpec, describeRun, runOne } from './runner';
import type { BenchServer } from './server';
import { median, round } from './stats';

/**
 * --instances K1,K2,…: K CoreMachine engines in one process (own pool, committer and consumers
 * each) sharing one in-process queue, straight to PostgreSQL and/or through PgBouncer.
 */
export interface ScaleRow {
  instances: number;
  poolPerInstance: number;
  viaPgBouncer: boolean;
  tasksPerSecond: number;
  peakServerConnections: number;
  lockWaitShare: number;
  transientErrors: number;
  failedTasks: number;
  /** Not in the issue's list, but they explain a slow row. */
  redeliveries: number;
  deadLetters: number;
  /** Backends terminated by --kill-every-ms, summed over runs. */
  connectionsKilled: number;
  /** Runs whose job did not end COMPLETED, or that failed outright. */
  failedRuns: number;
  /** Of the median run: what the lock-waiting backends were waiting for (evidence for a hot row). */
  topLockWaits: Array<{ what: string; share: number }>;
  /** tasks/s relative to K = 1 on the same path (target at 16 and 32: ≥ 0.8). */
  vsSingleInstance: number | null;
}

export function poolPerInstance(options: BenchOptions, instances: number): number {
  return options.poolPerInstance ?? (instances >= 16 ? 2 : (options.pool ?? (options.workers[0] ?? 4) + 2));
}

export async function scaleBenchmark(server: BenchServer, options: BenchOptions, log: (line: string) => void): Promise<{ rows: ScaleRow[]; table: string }> {
  const workers = options.workers[0] ?? 4;
  const batch = options.batch[0] ?? 64;
  const n = Math.max(...options.ns);
  const binary = findPgBouncer();
  const paths: boolean[] = options.pgBouncer === 'only' ? [true] : options.pgBouncer === 'off' || !binary ? [false] : [false, true];
  if (options.pgBouncer === 'only' && !binary) throw new Error('--via-pgbouncer: no pgbouncer binary found (set PGBOUNCER)');
  if (options.pgBouncer === 'both' && !binary) log('pgbouncer not installed: scale runs go straight to PostgreSQL only');
  let bouncer: BenchBouncer | undefined;
  const rows: ScaleRow[] = [];
  try {
    for (const viaPgBouncer of paths) {
      if (viaPgBouncer && binary) bouncer = await startPgBouncer(binary, server.adminUrl, options.pgBouncerPoolSize, log);
      for (const instances of options.instances) {
        const pool = poolPerInstance(options, instances);
        const results: RunResult[] = [];
        let failedRuns = 0;
        for (let run = 1; run <= options.runs; run++) {
          try {
            const result = await runOne(server, options, baseSpec(options, 'coremachine-scale', n, run, workers, batch), (databaseUrl) => ({
              scale: {
                instances,
                poolPerInstance: pool,
                viaPgBouncer,
                killEveryMs: options.killEveryMs,
                connectUrl: viaPgBouncer && bouncer ? bouncer.urlFor(databaseUrl) : databaseUrl,
                ...(viaPgBouncer && bouncer ? { pgBouncerConsoleUrl: bouncer.consoleUrl } : {}),
              },
            }));
            const s = result.scale;
            log(
              `${describeRun(result)} [K ${instances} x pool ${pool}${viaPgBouncer ? ', via PgBouncer' : ''}${s?.connectionsKilled ? `, ${s.connectionsKilled} backends killed` : ''}: peak ${s?.peakServerConnections} server connections, lock-wait ${round(100 * (s?.lockWaitShare ?? 0), 1)}%, ${s?.transientErrors} transient errors, ${s?.failedTasks} failed tasks, job ${s?.jobStatus}]`,
            );
            results.push(result);
            if (s?.jobStatus !== 'COMPLETED') failedRuns++;
          } catch (error) {
            failedRuns++;
            log(`  coremachine-scale K=${instances} run ${run} FAILED: ${error instanceof Error ? error.message.split('\n', 1)[0] : String(error)}`);
          }
        }
        rows.push(summarizeScale(instances, pool, viaPgBouncer, results, failedRuns));
      }
      await bouncer?.stop();
      bouncer = undefined;
    }
  } finally {
    await bouncer?.stop();
  }
  for (const row of rows) {
    const single = rows.find((r) => r.instances === 1 && r.viaPgBouncer === row.viaPgBouncer);
    row.vsSingleInstance = single && single.tasksPerSecond > 0 ? round(row.tasksPerSecond / single.tasksPerSecond, 2) : null;
  }
  return { rows, table: scaleTable(n, options.runs, options.pgBouncerPoolSize, rows) };
}

function summarizeScale(instances: number, pool: number, viaPgBouncer: boolean, results: readonly RunResult[], failedRuns: number): ScaleRow {
  const measures = results.map((r) => r.scale).filter((s): s is ScaleMeasures => s !== undefined);
  const sum = (pick: (s: ScaleMeasures) => number) => measures.reduce((total, s) => total + pick(s), 0);
  const byRate = [...results].sort((a, b) => a.operationsPerSecond - b.operationsPerSecond);
  const medianRun = byRate[Math.floor((byRate.length - 1) / 2)];
  return {
    instances,
    poolPerInstance: pool,
    viaPgBouncer,
    tasksPerSecond: round(median(results.map((r) => r.operationsPerSecond)), 1),
    peakServerConnections: Math.max(0, ...measures.map((s) => s.peakServerConnections)),
    lockWaitShare: round(median(measures.map((s) => s.lockWaitShare)), 4),
    // Summed over runs: a single transient error or failed task anywhere must show.
    transientErrors: sum((s) => s.transientErrors),
    failedTasks: sum((s) => s.failedTasks),
    redeliveries: sum((s) => s.redeliveries),
    deadLetters: sum((s) => s.deadLetters),
    connectionsKilled: sum((s) => s.connectionsKilled),
    failedRuns,
    topLockWaits: (medianRun?.scale?.lockWaits ?? []).map((w) => ({ what: w.what, share: round(w.share, 3) })),
    vsSingleInstance: null,
  };
}

function scaleTable(n: number, runs: number, bouncerPool: number, rows: readonly ScaleRow[]): string {
  const lines = [
    `Many instances, one database — 3 x ${n.toLocaleString('en-US')} tasks, ${runs} run(s) per row (tasks/s and lock-wait: median; connections: max; errors and failures: sum over runs):`,
    '',
    '| instances | pool / instance | via PgBouncer | tasks/s | vs 1 instance | peak server connections | lock-wait share | transient errors | redeliveries | dead letters | failed tasks | failed runs | connections killed |',
    '|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.instances} | ${r.poolPerInstance} | ${r.viaPgBouncer ? `yes (pool ${bouncerPool})` : 'no'} | ${Number.isFinite(r.tasksPerSecond) ? round(r.tasksPerSecond, 0).toLocaleString('en-US') : '–'} | ${r.vsSingleInstance ?? '–'} | ${r.peakServerConnections} | ${Number.isFinite(r.lockWaitShare) ? `${round(100 * r.lockWaitShare, 1)}%` : '–'} | ${r.transientErrors} | ${r.redeliveries} | ${r.deadLetters} | ${r.failedTasks} | ${r.failedRuns} | ${r.connectionsKilled} |`,
    );
  }
  const waits = rows.filter((r) => r.topLockWaits.length > 0);
  if (waits.length > 0) {
    lines.push('', 'What the lock-waiting backends waited for (median run; share of its lock-wait samples):', '');
    for (const r of waits) {
      const list = r.topLockWaits.map((w) => `${round(100 * w.share, 0)}% \`${w.what.replace(/`/g, "'")}\``).join('; ');
      lines.push(`- K = ${r.instances}${r.viaPgBouncer ? ' via PgBouncer' : ''}: ${list}`);
    }
  }
  lines.push(
    '',
    'Lock-wait share: backends waiting on a lock / active backends, sampled from pg_stat_activity every 100 ms. A high share at many instances means their transactions queue on the same rows; the list above names the row kind (tuple/transactionid on a table) and the statement that waited.',
  );
  return lines.join('\n');
}
