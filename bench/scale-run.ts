import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { CoreMachine } from '../core/engine/core-machine';
import { isTransientDatabaseError } from '../core/db/transient-errors';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { ActivitySampler } from './activity-sampler';
import { benchJob, BENCH_JOB_TYPE } from './bench-job';
import { ConnectionKiller } from './connection-killer';
import { migrateBenchDatabase } from './database-setup';
import type { RunSpec } from './protocol';
import type { SqlCounter } from './sql-counter';
import { sleep } from './stats';
import type { Execution, SystemRun } from './system-run';

const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);
const JANITOR_INTERVAL_MS = 5000;

/**
 * K engine instances in one process, as K Function app instances would be: each has its own pg
 * pool, CoreMachine (so its own group committer) and InProcessWorker consumers, and all of them
 * share ONE InProcessTransport, so any instance can take any message — Service Bus competing
 * consumers. Optionally every pool goes through PgBouncer (transaction mode).
 *
 * Counted besides throughput: peak server connections and lock-wait share (pg_stat_activity,
 * sampled), transient database errors (every pooled query or connection attempt that failed with
 * an error `isTransientDatabaseError` accepts), redeliveries and dead letters (the shared queues'
 * statistics), and failed tasks (from the database afterwards). A job that ends FAILED is
 * reported, not thrown: that is the finding.
 */
export function scaleRun(spec: RunSpec, counter: SqlCounter): SystemRun {
  const scale = spec.scale;
  if (!scale) throw new Error('coremachine-scale needs a scale spec');
  const pools: pg.Pool[] = [];
  const workers: InProcessWorker[] = [];
  const machines: CoreMachine[] = [];
  let transport: InProcessTransport | undefined;
  let transientErrors = 0;
  counter.onError = (error) => {
    if (isTransientDatabaseError(error)) transientErrors++;
  };

  return {
    async setup() {
      await migrateBenchDatabase(spec.databaseUrl);
    },

    async start() {
      const logger = createLogger('error');
      const registry = new Registry().register(benchJob);
      transport = new InProcessTransport();
      for (let k = 0; k < scale.instances; k++) {
        const pool = counter.createPool(scale.connectUrl, scale.poolPerInstance, `cm-bench-scale-${k}`, { stripStatementNames: scale.viaPgBouncer });
        pools.push(pool);
        const machine = await CoreMachine.create({ pool, registry, transport, logger });
        machines.push(machine);
        // With fault injection, one instance runs the janitor as the Functions timer would: it
        // re-sends outbox rows whose dispatch a killed connection cut short, and frees expired leases.
        const janitor = scale.killEveryMs > 0 && k === 0 ? { janitorIntervalMs: JANITOR_INTERVAL_MS } : {};
        workers.push(
          new InProcessWorker(machine, transport, logger, {
            taskBatchSize: spec.batchSize,
            taskConcurrency: spec.workers,
            jobConcurrency: spec.jobConcurrency,
            ...janitor,
          }),
        );
      }
    },

    async execute(): Promise<Execution> {
      const first = machines[0];
      if (!first || !transport) throw new Error('start() was not called');
      // Connected to the bench database itself, so pg_locks' relation ids resolve to table names.
      const sampler = await ActivitySampler.start(spec.databaseUrl, spec.databaseName, 100);
      const killer = scale.killEveryMs > 0 ? await ConnectionKiller.start(spec.databaseUrl, spec.databaseName, scale.killEveryMs) : undefined;
      const poller = new pg.Client({ connectionString: spec.databaseUrl, application_name: 'cm-bench-poller' });
      await poller.connect();
      let polls = 0;
      try {
        const started = performance.now();
        const { job } = await first.submitJob(BENCH_JOB_TYPE, { n: spec.n, runId: randomUUID(), fanInFromResults: spec.fanInFromResults });
        killer?.arm();
        const deadline = started + spec.timeoutMs;
        let status: string = job.status;
        while (!TERMINAL.has(status)) {
          // A stuck job is a finding, not a harness failure: report it with what was measured.
          if (performance.now() > deadline) {
            status = `STUCK ${status} after ${spec.timeoutMs} ms`;
            break;
          }
          await sleep(spec.pollMs);
          polls++;
          const row = await poller.query<{ status: string }>('SELECT status FROM coremachine.jobs WHERE job_id = $1', [job.jobId]);
          status = row.rows[0]?.status ?? 'MISSING';
        }
        const elapsedMs = performance.now() - started;
        const activity = await sampler.stop();
        const connectionsKilled = (await killer?.stop()) ?? 0;
        polls++;
        const tasks = await poller.query<{ failed: number; completed: number }>(
          `SELECT count(*) FILTER (WHERE status = 'FAILED')::int AS failed, count(*) FILTER (WHERE status = 'COMPLETED')::int AS completed
             FROM coremachine.tasks WHERE job_id = $1`,
          [job.jobId],
        );
        const queues = [transport.jobs, transport.tasks];
        const completed = tasks.rows[0]?.completed ?? 0;
        return {
          elapsedMs,
          // Throughput counts completed tasks only: a failed job must not look fast.
          operations: completed,
          // The poller's and the sampler's own queries are not the engine's.
          uncountedTransactions: polls + activity.samples + connectionsKilled,
          notes: status === 'COMPLETED' ? [] : [`job ended ${status}`],
          scale: {
            instances: scale.instances,
            poolPerInstance: scale.poolPerInstance,
            viaPgBouncer: scale.viaPgBouncer,
            peakServerConnections: activity.peakServerConnections,
            lockWaitShare: activity.lockWaitShare,
            lockWaits: activity.lockWaits,
            transientErrors,
            redeliveries: queues.reduce((sum, queue) => sum + queue.stats.abandoned + queue.stats.lockExpired, 0),
            deadLetters: queues.reduce((sum, queue) => sum + queue.deadLetters.length, 0),
            failedTasks: tasks.rows[0]?.failed ?? 0,
            connectionsKilled,
            jobStatus: status,
          },
        };
      } finally {
        await sampler.stop().catch(() => undefined);
        await killer?.stop();
        await poller.end();
      }
    },

    async stop() {
      await Promise.all(workers.map((worker) => worker.stop()));
      await transport?.close();
      await Promise.all(pools.map((pool) => pool.end()));
      if (scale.pgBouncerConsoleUrl) await closeBouncerConnections(scale.pgBouncerConsoleUrl, spec.databaseName);
    },
  };
}

/** PgBouncer keeps its server connections after the clients leave; the harness waits for none. */
async function closeBouncerConnections(consoleUrl: string, database: string): Promise<void> {
  const adminConsole = new pg.Client({ connectionString: consoleUrl });
  adminConsole.on('error', () => undefined);
  try {
    await adminConsole.connect();
    // The admin console speaks the simple query protocol only: no parameters.
    await adminConsole.query(`KILL ${database}`);
    await adminConsole.query(`RESUME ${database}`).catch(() => undefined);
  } catch {
    // The harness then waits for the server connections to time out, and drops the database anyway.
  } finally {
    await adminConsole.end().catch(() => undefined);
  }
}
