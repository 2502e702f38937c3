import pg from 'pg';
import PgBoss from 'pg-boss';
import { z } from 'zod';
import { createStageCounters } from './database-setup';
import type { RunSpec } from './protocol';
import type { SqlCounter } from './sql-counter';
import { sleep } from './stats';
import { deadlineError, type Execution, type SystemRun } from './system-run';

const QUEUE = 'bench_noop';
const INSERT_CHUNK = 10_000;
// pg-boss 10's floor: a worker waits this long between fetches unless notified.
const POLLING_INTERVAL_S = 0.5;
const Data = z.object({ stage: z.number().int(), i: z.number().int() });

/**
 * The same workload on pg-boss 10, chained the way a pg-boss user would: stage 1's N jobs are
 * added with `insert` in chunks; `--pgboss-workers` `work()` registrations fetch `batchSize` jobs
 * at a time (v10 has no teamSize/teamConcurrency: concurrency is the number of registrations);
 * each batch bumps its stage's counter row by the batch size in one UPDATE, and the batch that
 * sees n = N inserts the next stage and wakes the workers (`notifyWorker`) instead of leaving them
 * to their polling interval. pg-boss completes a batch after the handler returns, so the run is
 * done when 3N jobs are `completed` in the database.
 */
export function pgBossRun(spec: RunSpec, counter: SqlCounter): SystemRun {
  let pool: pg.Pool | undefined;
  let boss: PgBoss | undefined;
  const workerIds: string[] = [];
  const total = spec.n * spec.stages;
  let handled = 0;
  let failure: Error | undefined;
  let onHandled: (() => void) | undefined;
  const firstStart = new Map<number, number>();
  const lastCompletion = new Map<number, number>();

  const insertStage = async (stage: number) => {
    if (!boss) throw new Error('start() was not called');
    for (let from = 0; from < spec.n; from += INSERT_CHUNK) {
      const to = Math.min(spec.n, from + INSERT_CHUNK);
      await boss.insert(Array.from({ length: to - from }, (_, k) => ({ name: QUEUE, data: { stage, i: from + k } })));
    }
    for (const id of workerIds) boss.notifyWorker(id);
  };

  const handler = async (jobs: Array<PgBoss.Job<unknown>>) => {
    const byStage = new Map<number, number>();
    for (const job of jobs) {
      const { stage } = Data.parse(job.data);
      byStage.set(stage, (byStage.get(stage) ?? 0) + 1);
    }
    for (const [stage, count] of byStage) {
      if (!firstStart.has(stage)) firstStart.set(stage, performance.now());
      const db = pool as pg.Pool;
      const { rows } = await db.query<{ n: number }>('UPDATE bench_stage_counter SET n = n + $2 WHERE stage = $1 RETURNING n', [stage, count]);
      if (rows[0]?.n === spec.n) {
        lastCompletion.set(stage, performance.now());
        if (stage < spec.stages) await insertStage(stage + 1);
      }
    }
    handled += jobs.length;
    if (handled >= total) onHandled?.();
  };

  return {
    async setup() {
      const setupBoss = new PgBoss({ connectionString: spec.databaseUrl, max: 2, supervise: false, schedule: false, migrate: true });
      setupBoss.on('error', () => undefined);
      await setupBoss.start();
      await setupBoss.createQueue(QUEUE);
      await setupBoss.stop({ graceful: false, wait: true });
      await createStageCounters(spec.databaseUrl, spec.stages);
    },

    async start() {
      const counted = counter.createPool(spec.databaseUrl, spec.poolSize, 'cm-bench-pgboss');
      pool = counted;
      // Its own statements go through the counted pool too, so they are in the per-task figures.
      boss = new PgBoss({ db: { executeSql: (text, values) => counted.query(text, values) }, supervise: false, schedule: false, migrate: false });
      boss.on('error', (error) => {
        failure ??= error;
      });
      await boss.start();
      for (let k = 0; k < spec.pgBoss.workers; k++) {
        workerIds.push(await boss.work(QUEUE, { batchSize: spec.pgBoss.batchSize, pollingIntervalSeconds: POLLING_INTERVAL_S }, handler));
      }
    },

    async execute(): Promise<Execution> {
      const allHandled = new Promise<void>((resolve) => (onHandled = resolve));
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(deadlineError(`pg-boss 3 x ${spec.n}`, spec.timeoutMs)), spec.timeoutMs);
      });
      try {
        await insertStage(1);
        await Promise.race([allHandled, timeout]);
        const polls = await waitForCompleted(spec, total, started);
        const elapsedMs = performance.now() - started;
        if (failure) throw failure;
        return {
          elapsedMs,
          handoverMs: handovers(spec.stages, firstStart, lastCompletion),
          uncountedTransactions: polls,
          settings: { ...spec.pgBoss, pool: spec.poolSize },
        };
      } finally {
        clearTimeout(timer);
      }
    },

    async stop() {
      await boss?.stop({ graceful: true, wait: true, timeout: 5000 });
      await pool?.end();
    },
  };
}

/** Completion is written after the handler returns (not awaited by pg-boss): wait for it in the table. */
async function waitForCompleted(spec: RunSpec, total: number, started: number): Promise<number> {
  const client = new pg.Client({ connectionString: spec.databaseUrl, application_name: 'cm-bench-poller' });
  await client.connect();
  let polls = 0;
  try {
    for (;;) {
      polls++;
      const result = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'", [QUEUE]);
      if ((result.rows[0]?.n ?? 0) >= total) return polls;
      if (performance.now() - started > spec.timeoutMs) throw deadlineError('pg-boss completion', spec.timeoutMs);
      await sleep(spec.pollMs);
    }
  } finally {
    await client.end();
  }
}

function handovers(stages: number, firstStart: Map<number, number>, lastCompletion: Map<number, number>): number[] {
  const result: number[] = [];
  for (let stage = 1; stage < stages; stage++) {
    const last = lastCompletion.get(stage);
    const first = firstStart.get(stage + 1);
    if (last !== undefined && first !== undefined) result.push(first - last);
  }
  return result;
}
