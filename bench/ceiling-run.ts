import pg from 'pg';
import type { RunSpec } from './protocol';
import type { SqlCounter } from './sql-counter';
import { deadlineError, type Execution, type SystemRun } from './system-run';

/**
 * The ceiling for any design that bumps one counter row per task: W clients on the same pool
 * size run 3N single-row autocommit updates of one row. Every update waits for the previous
 * one's commit (row lock), so this is bounded by one commit round trip per update. The loop
 * stops after 3N updates or `ceilingMaxMs`, whichever comes first: its rate is steady from the
 * first second, and the cap keeps a default run within its time budget.
 */
export function ceilingRun(spec: RunSpec, counter: SqlCounter): SystemRun {
  let pool: pg.Pool | undefined;

  return {
    async setup() {
      const client = new pg.Client({ connectionString: spec.databaseUrl });
      await client.connect();
      try {
        await client.query('CREATE TABLE bench_counter (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)');
        await client.query('INSERT INTO bench_counter (id) VALUES (1)');
      } finally {
        await client.end();
      }
    },

    async start() {
      pool = counter.createPool(spec.databaseUrl, spec.poolSize, 'cm-bench-ceiling');
      // Open the connections before the clock starts, as the other systems' pools are warm by then.
      const clients = await Promise.all(Array.from({ length: spec.workers }, () => (pool as pg.Pool).connect()));
      for (const client of clients) client.release();
    },

    async execute(): Promise<Execution> {
      const db = pool;
      if (!db) throw new Error('start() was not called');
      const total = spec.n * spec.stages;
      let issued = 0;
      let done = 0;
      const started = performance.now();
      const stopAt = started + Math.min(spec.ceilingMaxMs, spec.timeoutMs);
      const loop = async () => {
        while (issued < total && performance.now() < stopAt) {
          issued++;
          await db.query('UPDATE bench_counter SET n = n + 1 WHERE id = 1');
          done++;
        }
      };
      await Promise.all(Array.from({ length: spec.workers }, loop));
      const elapsedMs = performance.now() - started;
      const check = await db.query<{ n: string | number }>('SELECT n FROM bench_counter WHERE id = 1');
      if (Number(check.rows[0]?.n) !== done) throw new Error(`counter is ${String(check.rows[0]?.n)}, expected ${done}`);
      if (done < total && elapsedMs > spec.timeoutMs) throw deadlineError(`ceiling (${total} updates)`, spec.timeoutMs);
      return { elapsedMs, operations: done, notes: done < total ? [`stopped after ${Math.round(elapsedMs)} ms: ${done} of ${total} updates`] : [] };
    },

    async stop() {
      await pool?.end();
    },
  };
}
