/**
 * The cost of a global concurrency limit on throughput (issue 13). One job of N tasks on 4 engine
 * instances (each its own pool) sharing one database and one in-process transport, run once per
 * case: without a limit, with a limit that never binds, and with limits that do. For binding limits
 * the ideal time is N x work / limit; the table shows how close the deferral loop gets to it.
 *
 *   npm run bench:limits -- [--n 500] [--work-ms 10] [--runs 1] [--cases none,limit_10000,limit_20,limit_5]
 *
 * With --runs R the cases are interleaved R times (case A, B, A, B, ...) so a machine that gets
 * busier or quieter during the run weighs on every case alike, and the table gives each case's median.
 * The cases run in the order --cases names them, so a comparison can be repeated in the other order.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createPool } from '../core/db/pool';
import { migrate } from '../core/db/migrator';
import { CoreMachine } from '../core/engine/core-machine';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineTask, type TaskConcurrency } from '../models';
import pg from 'pg';
import { backendCpu, cpuDeltaMs, createDatabase, dropDatabase, findServer } from './server';
import { median } from './stats';

const INSTANCES = 4;

/** The command line, strictly: an unknown or misspelt flag is an error, not a run with defaults. */
function parseFlags(): { n: number; workMs: number; runs: number; cases: string[] | undefined } {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '500' },
      'work-ms': { type: 'string', default: '10' },
      runs: { type: 'string', default: '1' },
      cases: { type: 'string' },
    },
  });
  const number = (name: 'n' | 'work-ms' | 'runs'): number => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a number >= 0`);
    return value;
  };
  return { n: number('n'), workMs: number('work-ms'), runs: Math.max(1, Math.floor(number('runs'))), cases: values.cases?.split(',') };
}

/** One case's run: its time, and the CPU it cost per task, in this process and in its database's backends, over the run alone. */
interface CaseResult {
  ms: number;
  deferrals: number;
  meanRunning: number;
  nodeUsPerTask: number;
  pgUsPerTask: number | null;
}

async function runCase(adminUrl: string, label: string, n: number, workMs: number, concurrency: TaskConcurrency | undefined): Promise<CaseResult> {
  const database = await createDatabase(adminUrl, `limits_${label}`, {});
  const admin = new pg.Client({ connectionString: adminUrl, application_name: 'cm-bench-admin' });
  await admin.connect();
  const pools = Array.from({ length: INSTANCES }, () => createPool(database.url, { max: 6 }));
  const transport = new InProcessTransport({ lockDurationMs: 60_000, maxDeliveryCount: 10 });
  let deferrals = 0;
  const logger = createLogger('debug', {}, (line) => {
    if (line.includes('message deferred by a limit')) deferrals++;
  });
  const task = defineTask({
    type: 'bench.limited',
    parameters: z.object({ i: z.number().int() }),
    ...(concurrency ? { concurrency } : {}),
    handler: async ({ i }) => {
      if (workMs > 0) await new Promise((resolve) => setTimeout(resolve, workMs));
      return i;
    },
  });
  const job = defineJob({ type: 'bench.limits', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(({ previous }) => previous.count);
  const registry = new Registry().register(job);
  try {
    await migrate(pools[0]!);
    const machines = await Promise.all(pools.map((pool) => CoreMachine.create({ pool, registry, transport, logger })));
    const workers = machines.map((machine) => new InProcessWorker(machine, transport, logger, { taskBatchSize: 16, taskConcurrency: 4, jobConcurrency: 1 }));
    // Every connection opened before the clock starts, so a backend's start-up is not counted as the run's work.
    await Promise.all(
      pools.map(async (pool) => {
        const clients = await Promise.all(Array.from({ length: 6 }, () => pool.connect()));
        for (const client of clients) client.release();
      }),
    );
    const cpuBefore = await backendCpu(admin, database.name);
    const nodeBefore = process.cpuUsage();
    const started = performance.now();
    const { job: submitted } = await machines[0]!.submitJob('bench.limits', { n });
    for (;;) {
      const state = await machines[0]!.getJob(submitted.jobId);
      if (state.status === 'COMPLETED') break;
      if (!['QUEUED', 'PROCESSING'].includes(state.status)) throw new Error(`job ended ${state.status}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const ms = performance.now() - started;
    const nodeUsed = process.cpuUsage(nodeBefore);
    const pgMs = cpuDeltaMs(cpuBefore, await backendCpu(admin, database.name));
    // How many tasks held a slot on average: their running times summed over the run's time, read
    // once the run is over. Sampling a count of running tasks while it ran cost the database more
    // than the engine's own claims did (a scan of the task table every 5 ms), and more in the limited
    // cases (wider rows), so it blurred the very difference this bench measures.
    const running = await pools[0]!.query<{ seconds: number }>(
      'SELECT COALESCE(sum(EXTRACT(EPOCH FROM finished_at - started_at)), 0)::float8 AS seconds FROM coremachine.tasks WHERE job_id = $1',
      [submitted.jobId],
    );
    const meanRunning = ((running.rows[0]?.seconds ?? 0) * 1000) / ms;
    await Promise.all(workers.map((worker) => worker.stop()));
    return { ms, deferrals, meanRunning, nodeUsPerTask: (nodeUsed.user + nodeUsed.system) / n, pgUsPerTask: pgMs === null ? null : (pgMs * 1000) / n };
  } finally {
    await transport.close();
    await Promise.all(pools.map((pool) => pool.end()));
    await admin.end();
    await dropDatabase(adminUrl, database.name);
  }
}

async function main(): Promise<void> {
  const { n, workMs, runs, cases: asked } = parseFlags();
  const allCases: Array<[string, TaskConcurrency | undefined]> = [
    ['none', undefined],
    ['limit_10000', { limit: 10_000 }],
    ['limit_20', { limit: 20 }],
    ['limit_5', { limit: 5 }],
  ];
  const wanted = asked ?? allCases.map(([label]) => label);
  const unknown = wanted.filter((label) => !allCases.some(([known]) => known === label));
  if (unknown.length > 0) throw new Error(`--cases: unknown case(s) ${unknown.join(', ')}; known: ${allCases.map(([label]) => label).join(', ')}`);
  // In the order asked for: each case runs after the previous one's database was dropped, so the
  // order is one of the things a paired comparison should be able to swap.
  const cases = wanted.flatMap((label) => allCases.filter(([known]) => known === label));
  // Started once the flags are known to be good: a bad flag starts nothing.
  const server = await findServer((line) => process.stderr.write(`${line}\n`));
  const results = new Map<string, CaseResult[]>();
  try {
    process.stdout.write(`${n} tasks of ${workMs} ms, ${INSTANCES} instances x 4 batches of 16, ${runs} run(s) per case, interleaved\n`);
    process.stdout.write('case          ms    tasks/s  ideal ms  deferrals  mean running  Node µs/task  PostgreSQL µs/task  CPU µs/task\n');
    const cpuOf = (r: CaseResult): number | null => (r.pgUsPerTask === null ? null : r.nodeUsPerTask + r.pgUsPerTask);
    const fixed = (value: number | null, width: number): string => (value === null ? '-' : value.toFixed(0)).padStart(width);
    const row = (label: string, r: CaseResult, ideal: number): string =>
      `${label.padEnd(12)} ${r.ms.toFixed(0).padStart(6)} ${((n / r.ms) * 1000).toFixed(0).padStart(8)} ${String(Number.isNaN(ideal) ? '-' : ideal).padStart(9)} ` +
      `${String(r.deferrals).padStart(10)} ${r.meanRunning.toFixed(1).padStart(13)} ${fixed(r.nodeUsPerTask, 13)} ${fixed(r.pgUsPerTask, 19)} ${fixed(cpuOf(r), 12)}\n`;
    const idealOf = (concurrency: TaskConcurrency | undefined): number =>
      concurrency && concurrency.limit < n ? Math.round((n * workMs) / concurrency.limit) : NaN;
    for (let run = 0; run < runs; run++) {
      for (const [label, concurrency] of cases) {
        const result = await runCase(server.adminUrl, label, n, workMs, concurrency);
        results.set(label, [...(results.get(label) ?? []), result]);
        process.stdout.write(row(label, result, idealOf(concurrency)));
      }
    }
    if (runs > 1) {
      process.stdout.write('median\n');
      const medianOrNull = (values: Array<number | null>): number | null => (values.some((v) => v === null) ? null : median(values as number[]));
      for (const [label, concurrency] of cases) {
        const all = results.get(label) ?? [];
        const medianRow: CaseResult = {
          ms: median(all.map((r) => r.ms)),
          deferrals: median(all.map((r) => r.deferrals)),
          meanRunning: median(all.map((r) => r.meanRunning)),
          nodeUsPerTask: median(all.map((r) => r.nodeUsPerTask)),
          pgUsPerTask: medianOrNull(all.map((r) => r.pgUsPerTask)),
        };
        process.stdout.write(row(label, medianRow, idealOf(concurrency)));
      }
      // Each case against the run of 'none' in the same round: on a machine whose speed drifts, the
      // paired ratio says more than the ratio of two medians. Time moves with whatever else the
      // machine does; CPU per task (this process and the database's backends, over the run) moves less.
      const baseline = results.get('none');
      if (baseline) {
        const percent = (ratio: number): string => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
        for (const [label] of cases.filter(([label]) => label !== 'none')) {
          const paired = (results.get(label) ?? []).map((r, run) => [r, baseline[run] as CaseResult] as const);
          const time = paired.map(([r, base]) => r.ms / base.ms);
          process.stdout.write(`${label} against none, time, run by run: ${time.map(percent).join(' ')}; median ${percent(median(time))}\n`);
          const cpu = paired.flatMap(([r, base]) => {
            const [mine, theirs] = [cpuOf(r), cpuOf(base)];
            return mine === null || theirs === null ? [] : [mine / theirs];
          });
          if (cpu.length > 0)
            process.stdout.write(`${label} against none, CPU per task, run by run: ${cpu.map(percent).join(' ')}; median ${percent(median(cpu))}\n`);
        }
      }
    }
  } finally {
    await server.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
