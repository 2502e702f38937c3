/**
 * The Burstable profile gives every Function instance ONE pooled connection (PG_POOL_MAX=1, so that
 * 8 scale groups × 40 instances fit a B2s). An instance never needs two connections at once: every
 * engine path holds a connection only for one transaction or statement, and what it does after a
 * commit (stage checks, dispatch) takes the next one. Checked here under the Functions host's
 * concurrency (task batches of 32 and 16 handlers, 16 job messages at once, host.json), with reads
 * polling and janitor sweeps running on the same single connection: every job completes exactly,
 * no message is rescheduled for a transient fault, no task runs twice.
 */
import type pg from 'pg';
import { createPool } from '../core/db/pool';
import { startHarness, useTestDatabase, waitForJob } from './support/harness';
import { expectedThreeStageSum } from './support/test-jobs';

const db = useTestDatabase();

/**
 * Counts acquisitions that gave up waiting for a free connection (what an instance waiting on
 * itself would show; the engine retries them quietly, so the logs alone would not tell).
 */
function countAcquireTimeouts(pool: pg.Pool): () => number {
  let timeouts = 0;
  const isTimeout = (error: unknown) => error instanceof Error && /timeout exceeded when trying to connect/.test(error.message);
  type Callback = (error: Error | undefined, ...rest: unknown[]) => void;
  const connect = pool.connect.bind(pool) as unknown as (callback?: Callback) => Promise<pg.PoolClient> | undefined;
  (pool as unknown as { connect: (callback?: Callback) => Promise<pg.PoolClient> | undefined }).connect = (callback) => {
    if (callback) {
      return connect((error, ...rest) => {
        if (isTimeout(error)) timeouts++;
        callback(error, ...rest);
      });
    }
    const acquiring = connect();
    acquiring?.catch((error: unknown) => {
      if (isTimeout(error)) timeouts++;
    });
    return acquiring;
  };
  return () => timeouts;
}
const timings: string[] = [];
afterAll(() => {
  process.stderr.write(`[budget-pool] 4 jobs × 3 stages × 100 tasks: ${timings.join('; ')}\n`);
});

test.each([1, 2])('a pool of %i connection(s) runs concurrent jobs to COMPLETED with no transient fault', async (poolMax) => {
  // A bounded acquisition timeout: an instance that waited on itself would never get its
  // connection and fail here; 10 s leaves room for a one-connection pool's queue on a loaded machine.
  const pool: pg.Pool = createPool(db.url, { max: poolMax, connectionTimeoutMillis: 10_000 });
  const acquireTimeouts = countAcquireTimeouts(pool);
  let mostWaiting = 0;
  const sampler = setInterval(() => {
    mostWaiting = Math.max(mostWaiting, pool.waitingCount);
  }, 2);
  const h = await startHarness(pool, { worker: { taskBatchSize: 32, taskConcurrency: 16, jobConcurrency: 16 } });
  try {
    const started = Date.now();
    const n = 100;
    const submitted = await Promise.all(Array.from({ length: 4 }, (_, i) => h.machine.submitJob('test.three_stages', { n, tag: `pool-${poolMax}-${i}` })));
    let sweeping = true;
    const sweeps = (async () => {
      let count = 0;
      while (sweeping) {
        await h.machine.sweep();
        count++;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return count;
    })();
    const done = await Promise.all(submitted.map(({ job }) => waitForJob(h.machine, job.jobId, 60_000)));
    sweeping = false;
    const sweepCount = await sweeps;
    const elapsed = Date.now() - started;

    expect(done.map((job) => [job.status, job.result])).toEqual(done.map(() => ['COMPLETED', { count: n, sum: expectedThreeStageSum(n) }]));
    expect(h.effects.total).toBe(4 * 3 * n);
    expect(h.effects.maxPerTask()).toBe(1);
    expect(sweepCount).toBeGreaterThan(0);
    const faults = h.logs.filter((line) => /transient|rescheduled|timeout exceeded when trying to connect/i.test(line));
    expect(faults).toEqual([]);
    expect(acquireTimeouts()).toBe(0);
    timings.push(`pool ${poolMax}: ${elapsed} ms, at most ${mostWaiting} queries waiting for a connection, ${sweepCount} janitor sweeps alongside`);
  } finally {
    clearInterval(sampler);
    await h.stop();
    await pool.end();
  }
});
