import pg from 'pg';
import type { ChildMessage, RunResult, RunSpec } from './protocol';
import { backendCpu, cpuDeltaMs, otherActiveSessions, readServerCounters, waitForNoBackends } from './server';
import { SqlCounter } from './sql-counter';
import { MB, RssSampler } from './stats';
import type { SystemRun } from './system-run';

/**
 * One run in its own process, so peak RSS, heap and JIT state belong to that run alone.
 * The orchestrator (run.ts) forks this file, sends a RunSpec and gets one ChildMessage back.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- deferred on purpose: a run loads only its own system */
function systemFor(spec: RunSpec, counter: SqlCounter): SystemRun {
  // Only the measured system's modules are loaded (required here, not imported at the top): another
  // system's libraries (graphile-worker, pg-boss, …) would sit in this run's heap and count in its RSS.
  switch (spec.system) {
    case 'coremachine':
    case 'coremachine-fair':
      return (require('./coremachine-run') as typeof import('./coremachine-run')).coreMachineRun(spec, counter);
    case 'graphile-worker':
      return (require('./graphile-run') as typeof import('./graphile-run')).graphileRun(spec, counter);
    case 'pg-boss':
      return (require('./pgboss-run') as typeof import('./pgboss-run')).pgBossRun(spec, counter);
    case 'ceiling':
      return (require('./ceiling-run') as typeof import('./ceiling-run')).ceilingRun(spec, counter);
    case 'coremachine-scale':
      return (require('./scale-run') as typeof import('./scale-run')).scaleRun(spec, counter);
  }
}
/* eslint-enable @typescript-eslint/no-require-imports */

async function measure(spec: RunSpec): Promise<RunResult> {
  const counter = new SqlCounter();
  const system = systemFor(spec, counter);
  await system.setup();
  await waitForNoBackends(spec.adminUrl, spec.databaseName);
  const before = await readServerCounters(spec.adminUrl, spec.databaseName);

  const admin = new pg.Client({ connectionString: spec.adminUrl, application_name: 'cm-bench-admin' });
  await admin.connect();
  try {
    await system.start();
    counter.reset();
    const cpuBefore = await backendCpu(admin, spec.databaseName);
    const startRss = process.memoryUsage().rss;
    const rss = new RssSampler(50);
    const nodeCpu = process.cpuUsage();
    const execution = await system.execute().finally(() => rss.stop());
    const nodeCpuUsed = process.cpuUsage(nodeCpu);
    const peakRss = rss.stop();
    const liveHeap = liveHeapAfterCollection();
    const cpuAfter = await backendCpu(admin, spec.databaseName);
    const others = await otherActiveSessions(spec.adminUrl, spec.databaseName);
    const counts = counter.snapshot();
    await system.stop();
    await waitForNoBackends(spec.adminUrl, spec.databaseName);
    const after = await readServerCounters(spec.adminUrl, spec.databaseName);

    const operations = execution.operations ?? spec.n * spec.stages;
    const serverTransactions = after.xactCommit + after.xactRollback - before.xactCommit - before.xactRollback - (execution.uncountedTransactions ?? 0);
    return {
      system: spec.system,
      n: spec.n,
      stages: spec.stages,
      run: spec.run,
      operations,
      elapsedMs: execution.elapsedMs,
      operationsPerSecond: operations / (execution.elapsedMs / 1000),
      stageCreateMs: execution.stageCreateMs ?? [],
      stageDispatchMs: execution.stageDispatchMs ?? [],
      handoverMs: execution.handoverMs ?? [],
      handoverAdvanceMs: execution.handoverAdvanceMs ?? [],
      handoverStartMs: execution.handoverStartMs ?? [],
      statements: counts.statements,
      transactions: counts.transactions,
      serverTransactions,
      byStatement: counts.byStatement,
      // pg_stat_wal is server-wide: meaningful only while nothing else writes.
      walBytes: after.walBytes - before.walBytes,
      walSyncs: after.walSyncs - before.walSyncs,
      peakRssMb: peakRss / MB,
      startRssMb: startRss / MB,
      liveHeapMb: liveHeap === null ? null : liveHeap / MB,
      nodeCpuMs: (nodeCpuUsed.user + nodeCpuUsed.system) / 1000,
      postgresCpuMs: cpuDeltaMs(cpuBefore, cpuAfter),
      otherActiveSessions: others,
      autoAnalyzedAfterMs: execution.autoAnalyzedAfterMs ?? null,
      taskHotUpdateShare: execution.taskHotUpdateShare ?? null,
      notes: execution.notes ?? [],
      ...(execution.serviceBus ? { serviceBus: execution.serviceBus } : {}),
      ...(execution.scale ? { scale: execution.scale } : {}),
      ...(execution.payload ? { payload: execution.payload } : {}),
      ...(execution.settings ? { settings: execution.settings } : {}),
    };
  } catch (error) {
    await system.stop().catch(() => undefined);
    throw error;
  } finally {
    await admin.end();
  }
}

/** Heap bytes referenced after a full collection; null when gc() is not exposed (the child run by hand). */
function liveHeapAfterCollection(): number | null {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return null;
  gc();
  return process.memoryUsage().heapUsed;
}

function reply(message: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      process.stdout.write(`${JSON.stringify(message)}\n`);
      resolve();
      return;
    }
    process.send(message, () => resolve());
  });
}

process.once('message', (raw) => {
  const spec = raw as RunSpec;
  void measure(spec)
    .then((result) => reply({ kind: 'result', result }))
    .catch((error: unknown) => {
      const err = error instanceof Error ? error : new Error(String(error));
      return reply({ kind: 'error', message: err.message, ...(err.stack ? { stack: err.stack } : {}) });
    })
    .finally(() => process.exit(0));
});
