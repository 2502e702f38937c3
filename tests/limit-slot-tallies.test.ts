/**
 * infra/migrations/029_limit_slot_tallies.sql: a key's concurrency slots are the sum of its
 * tallies, one per key and database session, added to by the claims and taken from by the
 * statements that move tasks out of PROCESSING, each in its own session's tally. What must hold:
 * - in every snapshot, a key's tallies sum to exactly its tasks running with a slot claim (the
 *   harness also checks this after every test of every suite: slotDisagreements);
 * - a session keeps one tally per key however many claims and settles it makes;
 * - only a task a claim deferred is marked as waiting for a slot, and its claim clears the mark;
 * - a tally that disagrees only idles slots (or, too low, lets a key run over) until the janitor's
 *   recount, which books the difference once however many janitors run, and frees no live slot;
 * - the janitor folds the tallies of exited sessions and those at 0, leaving each key's sum as it was;
 * - a batch of one key is claimed first and counted after, under the key's lock
 *   (028_claim_before_count.sql): a claim of the key committed in between is counted, and a
 *   claim that would go over the limit is undone, so concurrent claims never hold more than it.
 */
import { z } from 'zod';
import { expectedSchemaVersion, loadMigrations, migrate } from '../core/db/migrator';
import { ConcurrencyClaims } from '../core/engine/limits';
import { RecentDeferrals } from '../core/engine/recent-deferrals';
import { claimLimitedBatch, foldSlotTallies, lockSlotRecount, reconcileSlotTallies } from '../core/state/limits-store';
import { cancelOpenTasks, releaseClaims } from '../core/state/tasks-store';
import { defineJob, defineRemoteTask, defineTask, type AnyJobDefinition, type TaskDefinition } from '../models';
import { slotDisagreements, useTestDatabase, waitForJob } from './support/harness';
import { startLimitsCluster } from './support/limits-cluster';
import { createTestDatabase } from './support/test-database';
import { createPool } from '../core/db/pool';

const db = useTestDatabase();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function count(sql: string, values: unknown[] = []): Promise<number> {
  return (await db.pool.query<{ n: number }>(sql, values)).rows[0]?.n ?? 0;
}

const Indexed = z.object({ i: z.number().int() });

function jobOf(type: string, task: TaskDefinition<typeof Indexed, number>): AnyJobDefinition {
  return defineJob({ type, parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
}

/** Samples the slot table against the task rows every few milliseconds until stopped. */
function watchSlots(limitKey: string): { stop(): Promise<{ samples: number; disagreements: unknown[]; maxHeld: number; maxWaiting: number }> } {
  let running = true;
  const seen = { samples: 0, disagreements: [] as unknown[], maxHeld: 0, maxWaiting: 0 };
  const loop = (async () => {
    while (running) {
      seen.disagreements.push(...(await slotDisagreements(db.pool)));
      const held = await count('SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = $1', [limitKey]);
      const waiting = await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE slot_waiter = $1 AND status = 'QUEUED'", [limitKey]);
      seen.maxHeld = Math.max(seen.maxHeld, held);
      seen.maxWaiting = Math.max(seen.maxWaiting, waiting);
      seen.samples++;
      await sleep(2);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return seen;
    },
  };
}

/**
 * One job of `n` tasks run to COMPLETED on two instances (task batches of `taskBatchSize`), with
 * the slots of `limitKey` watched from submit to the end.
 */
async function runWatched(
  jobType: string,
  task: TaskDefinition<typeof Indexed, number>,
  limitKey: string,
  n: number,
  taskBatchSize: number,
): Promise<{ samples: number; disagreements: unknown[]; maxHeld: number; maxWaiting: number }> {
  const cluster = await startLimitsCluster(db.url, [jobOf(jobType, task)], 2, taskBatchSize);
  const watch = watchSlots(limitKey);
  try {
    const { job } = await cluster.machines[0]!.submitJob(jobType, { n });
    const done = await waitForJob(cluster.machines[1]!, job.jobId, 60_000);
    expect([done.status, done.result]).toEqual(['COMPLETED', n]);
  } finally {
    await cluster.stop();
  }
  return watch.stop();
}

test('a limit that never binds: slots come and go with their tasks in every snapshot, no task is marked as waiting, and the task rows are updated in place (HOT)', async () => {
  const task = defineTask({
    type: 'slots.free',
    parameters: Indexed,
    concurrency: { limit: 10_000 },
    handler: async ({ i }) => {
      await sleep(1 + (i % 3));
      return i;
    },
  });
  const before = await db.pool.query<{ upd: string; hot: string }>(
    "SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relid = 'coremachine.tasks'::regclass",
  );
  const seen = await runWatched('slots.free_job', task, 'slots.free:', 400, 8);
  expect(seen.samples).toBeGreaterThan(5);
  expect(seen.disagreements).toEqual([]);
  expect(seen.maxHeld).toBeGreaterThan(1); // the slots were taken, many at once
  expect(seen.maxWaiting).toBe(0);
  expect(await count('SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies')).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE limit_key = 'slots.free:' AND status = 'COMPLETED' AND slot_waiter IS NULL")).toBe(
    400,
  );

  // The cluster's pools have ended, so its backends have reported or are about to.
  const baseline = { upd: Number(before.rows[0]?.upd ?? 0), hot: Number(before.rows[0]?.hot ?? 0) };
  let counts = { upd: 0, hot: 0 };
  for (let waited = 0; waited < 15_000 && counts.upd < 800; waited += 100) {
    await sleep(100);
    const result = await db.pool.query<{ upd: string; hot: string }>(
      "SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relid = 'coremachine.tasks'::regclass",
    );
    counts = { upd: Number(result.rows[0]?.upd ?? 0) - baseline.upd, hot: Number(result.rows[0]?.hot ?? 0) - baseline.hot };
  }
  // A claim and a settle per task at least.
  expect(counts.upd).toBeGreaterThanOrEqual(800);
  // Before 027 every claim and settle of a limited task changed the indexed slot keys: 0 of them
  // were HOT. The bound leaves room for page pruning lagging on a loaded machine (as in
  // hot-task-updates.test.ts).
  expect(counts.hot / counts.upd).toBeGreaterThan(0.4);
}, 90_000);

test('a limit of 1 that binds: never more than one slot, the deferred tasks are marked as waiting, and each claim clears its mark', async () => {
  const task = defineTask({
    type: 'slots.one',
    parameters: Indexed,
    concurrency: { limit: 1 },
    handler: async ({ i }) => {
      await sleep(25);
      return i;
    },
  });
  const seen = await runWatched('slots.one_job', task, 'slots.one:', 8, 1);
  expect(seen.disagreements).toEqual([]);
  expect(seen.maxHeld).toBe(1);
  expect(seen.maxWaiting).toBeGreaterThan(0);
  expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE limit_key = 'slots.one:' AND slot_waiter IS NOT NULL")).toBe(0);
}, 60_000);

test('a tally left too high idles a slot until the janitor recounts it; the sweep frees no live slot, and folds the tallies of sessions gone', async () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const task = defineTask({
    type: 'slots.ghost',
    parameters: Indexed,
    concurrency: { limit: 2 },
    handler: async ({ i }) => {
      await gate;
      return i;
    },
  });
  // A slot counted for a task that is gone, as a way out of PROCESSING that forgot to free its slot
  // would leave it, in the tally of a session long gone.
  await db.pool.query("INSERT INTO coremachine.limit_slot_tallies (limit_key, backend_pid, held) VALUES ('slots.ghost:', 0, 1)");
  const held = "SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = 'slots.ghost:'";
  const cluster = await startLimitsCluster(db.url, [jobOf('slots.ghost_job', task)], 2, 1);
  try {
    const { job } = await cluster.machines[0]!.submitJob('slots.ghost_job', { n: 2 });
    const running = "SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND status = 'PROCESSING'";
    for (let i = 0; i < 500 && (await count(running, [job.jobId])) === 0; i++) await sleep(10);
    await sleep(300);
    // The ghost and the first task claimed hold both slots: the other task waits.
    expect(await count(running, [job.jobId])).toBe(1);
    expect(await slotDisagreements(db.pool)).toEqual([{ task_id: 'key slots.ghost:', problem: 'tallies count 2 for 1 running' }]);

    const report = await cluster.machines[1]!.sweep();
    expect([report.freedStaleSlots, report.restoredSlots]).toEqual([1, 0]);
    // The live task's slot is still counted, the ghost's is not. The freed slot may be taken at once
    // by the other task, so slots and running tasks are compared in one snapshot: equal, where the
    // ghost left in would count one more and the live slot freed one less.
    const agree = await db.pool.query<{ held: number; running: number }>(
      `SELECT (SELECT COALESCE(sum(held), 0)::int FROM coremachine.limit_slot_tallies WHERE limit_key = 'slots.ghost:') AS held,
              (SELECT count(*)::int FROM coremachine.tasks WHERE job_id = $1 AND status = 'PROCESSING') AS running`,
      [job.jobId],
    );
    expect(agree.rows[0]!.held).toBe(agree.rows[0]!.running);
    // The freed slot is taken by the other task: both run, each in its own slot.
    for (let i = 0; i < 1000 && (await count(running, [job.jobId])) < 2; i++) await sleep(10);
    expect(await count(running, [job.jobId])).toBe(2);
    expect(await count(held)).toBe(2);
    release();
    expect((await waitForJob(cluster.machines[1]!, job.jobId, 30_000)).status).toBe('COMPLETED');
    const after = await cluster.machines[1]!.sweep();
    expect([after.freedStaleSlots, after.restoredSlots]).toEqual([0, 0]);
    expect(await count(held)).toBe(0);
  } finally {
    release();
    await cluster.stop();
  }
  // The cluster's sessions have ended: a sweep folds their tallies away, and the key reads no row.
  const janitor = await startLimitsCluster(db.url, [], 1, 1);
  try {
    let rows = -1;
    for (let i = 0; i < 100 && rows !== 0; i++) {
      await janitor.machines[0]!.sweep();
      rows = await count("SELECT count(*)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = 'slots.ghost:'");
      if (rows !== 0) await sleep(50);
    }
    expect(rows).toBe(0);
  } finally {
    await janitor.stop();
  }
}, 60_000);

test("an operator's release of a remote claim frees its slot in the same statement", async () => {
  const remote = defineRemoteTask({
    type: 'slots.remote',
    parameters: Indexed,
    result: z.number().int(),
    concurrency: { limit: 1 },
  });
  const cluster = await startLimitsCluster(db.url, [jobOf('slots.remote_job', remote)], 1, 1);
  try {
    const machine = cluster.machines[0]!;
    const { job } = await machine.submitJob('slots.remote_job', { n: 2 });
    const claim = async () => {
      for (let i = 0; i < 500; i++) {
        const claimed = await machine.remote.claim({ workerId: 'remote-1', taskTypes: ['slots.remote'], maxTasks: 2 });
        if (claimed.length > 0) return claimed;
        await sleep(10);
      }
      throw new Error('nothing to claim');
    };
    const first = await claim();
    expect(first).toHaveLength(1); // the limit of 1
    const held = "SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = 'slots.remote:'";
    expect(await count(held)).toBe(1);
    await machine.remote.release(first[0]!.taskId);
    expect(await count(held)).toBe(0);
    for (let done = 0; done < 2;) {
      for (const task of await claim()) {
        await machine.remote.complete(task.taskId, { claimId: task.claimId, result: (task.parameters as { i: number }).i });
        done++;
      }
    }
    expect((await waitForJob(machine, job.jobId, 30_000)).status).toBe('COMPLETED');
    expect(await count(held)).toBe(0);
  } finally {
    await cluster.stop();
  }
}, 60_000);

test('migrations 027 and 029 on a database with work in it: running limited tasks keep their slots, queued ones may be woken', async () => {
  const old = await createTestDatabase({ migrate: false });
  try {
    await migrate(
      old.pool,
      loadMigrations().filter((m) => m.version < 27),
    );
    await old.pool.query(
      `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters) VALUES ('j', 'slots.old_job', 'PROCESSING', 1, 1, '{}')`,
    );
    await old.pool.query(`INSERT INTO coremachine.stages (job_id, stage, name, status, total) VALUES ('j', 1, 'all', 'PROCESSING', 6)`);
    await old.pool.query(
      `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, attempt, claim_id, lease_expires_at, started_at, remote, limit_key)
       VALUES ('j-t0', 'j', 1, 0, 'slots.old', 'PROCESSING', '{}', 1, gen_random_uuid(), now() + interval '5 minutes', now(), false, 'k:a'),
              ('j-t1', 'j', 1, 1, 'slots.old', 'QUEUED', '{}', 0, NULL, NULL, NULL, false, 'k:a'),
              ('j-t2', 'j', 1, 2, 'slots.old_remote', 'QUEUED', '{}', 0, NULL, NULL, NULL, true, 'k:a'),
              ('j-t3', 'j', 1, 3, 'slots.free', 'PROCESSING', '{}', 1, gen_random_uuid(), now() + interval '5 minutes', now(), false, NULL),
              ('j-t4', 'j', 1, 4, 'slots.old', 'PROCESSING', '{}', 1, gen_random_uuid(), now() + interval '5 minutes', now(), false, 'k:a'),
              ('j-t5', 'j', 1, 5, 'slots.old', 'PROCESSING', '{}', 1, gen_random_uuid(), now() + interval '5 minutes', now(), false, 'k:b')`,
    );
    expect(await migrate(old.pool)).toEqual({ from: 26, to: expectedSchemaVersion() });
    // 027 gave each key's running tasks a slot claim; 029 tallies them per key, in the tally of no live session.
    expect((await old.pool.query('SELECT limit_key, backend_pid, held::int FROM coremachine.limit_slot_tallies ORDER BY limit_key')).rows).toEqual([
      { limit_key: 'k:a', backend_pid: 0, held: 2 },
      { limit_key: 'k:b', backend_pid: 0, held: 1 },
    ]);
    expect((await old.pool.query<{ gone: string | null }>("SELECT to_regclass('coremachine.limit_slot_claims')::text AS gone")).rows).toEqual([{ gone: null }]);
    const waiters = await old.pool.query('SELECT task_id, slot_waiter FROM coremachine.tasks ORDER BY task_id');
    expect(waiters.rows).toEqual([
      { task_id: 'j-t0', slot_waiter: null },
      { task_id: 'j-t1', slot_waiter: 'k:a' },
      { task_id: 'j-t2', slot_waiter: null },
      { task_id: 'j-t3', slot_waiter: null },
      { task_id: 'j-t4', slot_waiter: null },
      { task_id: 'j-t5', slot_waiter: null },
    ]);
    expect(await slotDisagreements(old.pool)).toEqual([]);
  } finally {
    await old.drop();
  }
});

test('one call claims a batch of one key that fits in a single update, and leaves what it cannot claim to the general path: another key, a re-claim, a task gone, a batch past the limit', async () => {
  await db.pool.query(
    `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters) VALUES ('fast', 'slots.fast_job', 'PROCESSING', 1, 1, '{}')`,
  );
  await db.pool.query(`INSERT INTO coremachine.stages (job_id, stage, name, status, total) VALUES ('fast', 1, 'all', 'PROCESSING', 8)`);
  const task = (i: number, status: string, attempt: number, limitKey: string | null, expired = false) =>
    db.pool.query(
      `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, attempt, remote, limit_key, claim_id, lease_expires_at, started_at)
       VALUES ($1, 'fast', 1, $2, 'slots.fast', $3, '{}', $4, false, $5,
               CASE WHEN $3 = 'PROCESSING' THEN gen_random_uuid() END, CASE WHEN $6 THEN now() - interval '1 second' END, CASE WHEN $3 = 'PROCESSING' THEN now() END)`,
      [`fast-t${i}`, i, status, attempt, limitKey, expired],
    );
  for (const i of [0, 1, 2]) await task(i, 'QUEUED', 0, 'fast:');
  await task(3, 'QUEUED', 0, 'other:'); // made when the type had a key function
  await task(4, 'PROCESSING', 1, 'fast:', true); // its lease ran out: a re-claim
  const request = (taskId: string, limit: number) => ({ taskId, attempt: 1, leaseSeconds: 60, limit, defaultKey: 'fast:', singleKey: 'fast:' });
  try {
    const batch = await claimLimitedBatch(
      db.pool,
      ['fast-t0', 'fast-t1', 'fast-t2', 'fast-t3', 'fast-t4', 'fast-gone', 'fast-t1'].map((id) => request(id, 100)),
      'host-a',
    );
    expect(batch.claimed.map((t) => [t.task_id, t.limit_key]).sort()).toEqual([
      ['fast-t0', 'fast:'],
      ['fast-t1', 'fast:'],
      ['fast-t2', 'fast:'],
      ['fast-t3', 'other:'],
    ]);
    expect(batch.reclaim).toEqual([{ taskId: 'fast-t4', limitKey: 'fast:' }]);
    expect(batch.deferred).toEqual([]);
    // The single update's three and the general path's one are tallied by key, and each path gave
    // its tasks its own slot claim id. (Had the general path claimed all four, one id would be on both.)
    const tallies = await db.pool.query<{ limit_key: string; held: number }>(
      "SELECT limit_key, sum(held)::int AS held FROM coremachine.limit_slot_tallies WHERE limit_key IN ('fast:', 'other:') GROUP BY 1 ORDER BY 1",
    );
    expect(tallies.rows.map((r) => [r.limit_key, r.held])).toEqual([
      ['fast:', 3],
      ['other:', 1],
    ]);
    const ids = await db.pool.query<{ slot_claim: string }>(
      "SELECT DISTINCT slot_claim FROM coremachine.tasks WHERE task_id IN ('fast-t0', 'fast-t1', 'fast-t2', 'fast-t3')",
    );
    expect(ids.rows).toHaveLength(2);

    // Past the limit: the general path claims what fits and defers the rest.
    for (const i of [5, 6, 7]) await task(i, 'QUEUED', 0, 'fast:');
    const full = await claimLimitedBatch(
      db.pool,
      ['fast-t5', 'fast-t6', 'fast-t7'].map((id) => request(id, 5)),
      'host-a',
    );
    // 3 held (the re-claimable task was inserted running without a slot claim, so it counts none):
    // 5 - 3 = 2 fit.
    expect(full.claimed.map((t) => t.task_id)).toEqual(['fast-t5', 'fast-t6']);
    expect(full.deferred).toEqual([{ taskId: 'fast-t7', limitKey: 'fast:', limit: 5, held: 3 }]);
  } finally {
    await db.pool.query("UPDATE coremachine.tasks SET status = 'CANCELLED', claim_id = NULL WHERE job_id = 'fast'");
    await db.pool.query("UPDATE coremachine.jobs SET status = 'CANCELLED' WHERE job_id = 'fast'");
    await db.pool.query("DELETE FROM coremachine.limit_slot_tallies WHERE limit_key IN ('fast:', 'other:')");
  }
});

test('cancelling a job frees the slots of its running tasks only: a requeued task still naming its earlier slot claim is not freed twice', async () => {
  await queuedTasks('cx', 3);
  const held = "SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = 'cx:'";
  const claimed = await claimLimitedBatch(
    db.pool,
    ['cx-t0', 'cx-t1', 'cx-t2'].map((taskId) => ({ taskId, attempt: 1, leaseSeconds: 60, limit: 10, defaultKey: 'cx:', singleKey: 'cx:' })),
    'host-a',
  );
  expect(claimed.claimed).toHaveLength(3);
  expect(await count(held)).toBe(3);
  // A transient fault gives t0's claim back: QUEUED again, its slot freed, t1 and t2 still counted.
  const t0 = claimed.claimed.find((t) => t.task_id === 'cx-t0')!;
  await releaseClaims(db.pool, [{ taskId: t0.task_id, claimId: t0.claim_id }]);
  expect(await count(held)).toBe(2);
  expect(await slotDisagreements(db.pool)).toEqual([]);
  // The cancel frees the two running tasks' slots, not t0's a second time (which would go below 0).
  const cancelled = await cancelOpenTasks(db.pool, 'cx');
  expect(cancelled.map((t) => [t.task_id, t.was_running]).sort()).toEqual([
    ['cx-t0', false],
    ['cx-t1', true],
    ['cx-t2', true],
  ]);
  expect(await count(held)).toBe(0);
  await db.pool.query("UPDATE coremachine.jobs SET status = 'CANCELLED' WHERE job_id = 'cx'");
});

/** A job of `n` QUEUED tasks `${prefix}-t<i>` of the slot key `${prefix}:`, at attempt 0. */
async function queuedTasks(prefix: string, n: number): Promise<string[]> {
  await db.pool.query(
    `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters) VALUES ($1, 'slots.' || $1, 'PROCESSING', 1, 1, '{}')`,
    [prefix],
  );
  await db.pool.query(`INSERT INTO coremachine.stages (job_id, stage, name, status, total) VALUES ($1, 1, 'all', 'PROCESSING', $2)`, [prefix, n]);
  await db.pool.query(
    `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, attempt, remote, limit_key)
     SELECT $1 || '-t' || i, $1, 1, i, 'slots.' || $1, 'QUEUED', '{}', 0, false, $1 || ':' FROM generate_series(0, $2 - 1) i`,
    [prefix, n],
  );
  return Array.from({ length: n }, (_, i) => `${prefix}-t${i}`);
}

/** Stops a test job's tasks and frees their slots, so the harness's checks see a quiet database. */
async function stopJob(prefix: string): Promise<void> {
  await cancelOpenTasks(db.pool, prefix);
  await db.pool.query("UPDATE coremachine.jobs SET status = 'CANCELLED' WHERE job_id = $1", [prefix]);
}

test('a batch of one key is counted after its claim, under the lock: a claim of the key committed meanwhile is counted, and over the limit the claim is undone and only what fits is taken', async () => {
  const ids = await queuedTasks('race', 6);
  const request = (taskId: string) => ({ taskId, attempt: 1, leaseSeconds: 60, limit: 4, defaultKey: 'race:', singleKey: 'race:' });
  const held = "SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = 'race:'";
  // Another claim of the key holds the key's lock (a second session, reentrant for itself).
  const other = await db.pool.connect();
  try {
    await other.query('BEGIN');
    await other.query("SELECT pg_advisory_xact_lock(hashtextextended('coremachine.limit:' || 'race:', 0))");
    // This claim's guess (no slot held) lets it claim its three at once; then it waits for the lock.
    const late = claimLimitedBatch(db.pool, ids.slice(3).map(request), 'host-late');
    for (let waited = 0; (await count("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")) === 0; waited++) {
      if (waited > 500) throw new Error('the claim never waited for the key');
      await sleep(10);
    }
    // Meanwhile the other claims three of the key and commits, releasing the lock.
    const first = await other.query(
      'SELECT outcome, task_id FROM coremachine.claim_limited_batch($1::text[], $2::int[], $3::float8[], $4::int[], $5::text[], $6::text[], $7)',
      [ids.slice(0, 3), [1, 1, 1], [60, 60, 60], [4, 4, 4], ['race:', 'race:', 'race:'], ['race:', 'race:', 'race:'], 'host-first'],
    );
    expect(first.rows.map((r: { outcome: string }) => r.outcome)).toEqual(['claimed', 'claimed', 'claimed']);
    await other.query('COMMIT');
    // Counted under the lock, 3 + 3 is past 4: the late claim is undone, and the locked way takes the one slot left.
    const batch = await late;
    expect(batch.claimed.map((t) => t.task_id)).toEqual(['race-t3']);
    expect(batch.deferred).toEqual([
      { taskId: 'race-t4', limitKey: 'race:', limit: 4, held: 3 },
      { taskId: 'race-t5', limitKey: 'race:', limit: 4, held: 3 },
    ]);
  } finally {
    other.release();
  }
  expect(await count(held)).toBe(4);
  expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = 'race' AND status = 'PROCESSING'")).toBe(4);
  // The undone claim left nothing behind: the deferred tasks are QUEUED, marked as waiting, naming no slot claim.
  const deferred = await db.pool.query("SELECT status, attempt, slot_claim, slot_waiter FROM coremachine.tasks WHERE task_id IN ('race-t4', 'race-t5')");
  expect(deferred.rows).toEqual([
    { status: 'QUEUED', attempt: 0, slot_claim: null, slot_waiter: 'race:' },
    { status: 'QUEUED', attempt: 0, slot_claim: null, slot_waiter: 'race:' },
  ]);
  expect(await slotDisagreements(db.pool)).toEqual([]);
  await stopJob('race');
});

test('many concurrent claims of one key, each on its own connection, never hold more than the limit between them, and fill it', async () => {
  const limit = 10;
  const callers = 12;
  const pool = createPool(db.url, { max: callers });
  try {
    for (let round = 0; round < 5; round++) {
      const prefix = `crowd${round}`;
      const ids = await queuedTasks(prefix, callers * 4);
      const request = (taskId: string) => ({ taskId, attempt: 1, leaseSeconds: 60, limit, defaultKey: `${prefix}:`, singleKey: `${prefix}:` });
      const batches = await Promise.all(
        Array.from({ length: callers }, (_, caller) => claimLimitedBatch(pool, ids.slice(caller * 4, caller * 4 + 4).map(request), `host-${caller}`)),
      );
      const claimed = batches.flatMap((b) => b.claimed.map((t) => t.task_id));
      // Exactly the limit: a call defers only what its count under the lock found no slot for.
      expect(claimed).toHaveLength(limit);
      expect(batches.flatMap((b) => b.deferred)).toHaveLength(callers * 4 - limit);
      expect(await count('SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies WHERE limit_key = $1', [`${prefix}:`])).toBe(limit);
      expect(await count("SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND status = 'PROCESSING'", [prefix])).toBe(limit);
      expect(await slotDisagreements(db.pool)).toEqual([]);
      await stopJob(prefix);
    }
  } finally {
    await pool.end();
  }
});

test('a key that deferred a moment ago is claimed the locked way (counted first), other keys still the fast way', async () => {
  const bound = await queuedTasks('bound', 4);
  const free = await queuedTasks('free', 2);
  const pool = createPool(db.url, { max: 2 });
  // What each call asks for: the single key of each request, as the array literal sent (NULL sends it the locked way).
  const singleKeys: string[] = [];
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const config = args[0] as { name?: string; values?: unknown[] };
    if (config.name === 'cm_claim_limited_batch') singleKeys.push(config.values?.[5] as string);
    return query(...args);
  };
  try {
    const claims = new ConcurrencyClaims(pool, 'host-a', new RecentDeferrals(60_000));
    const request = (prefix: string, taskId: string) => ({ taskId, attempt: 1, leaseSeconds: 60, limit: 2, defaultKey: `${prefix}:`, singleKey: `${prefix}:` });
    const first = await claims.claim(bound.slice(0, 3).map((id) => request('bound', id)));
    expect(first.map((o) => o.kind)).toEqual(['claimed', 'claimed', 'deferred']);
    const second = await claims.claim([request('bound', bound[3]!)]);
    expect(second.map((o) => o.kind)).toEqual(['deferred']);
    const other = await claims.claim(free.map((id) => request('free', id)));
    expect(other.map((o) => o.kind)).toEqual(['claimed', 'claimed']);
    expect(singleKeys).toEqual(['{bound:,bound:,bound:}', '{NULL}', '{free:,free:}']);
  } finally {
    await pool.end();
    await stopJob('bound');
    await stopJob('free');
  }
});

test('a fast claim waiting for the key while a locked claim of the key wants one of its tasks (a redelivered message on two instances): the deadlock is detected, the task is claimed once, and nothing is left held', async () => {
  const ids = await queuedTasks('dl', 3);
  const [t0, t1, t2] = ids as [string, string, string];
  const locked = await db.pool.connect();
  const claims = new ConcurrencyClaims(db.pool, 'host-fast', new RecentDeferrals(60_000));
  const callLocked = (taskIds: string[]) =>
    locked.query<{ outcome: string; task_id: string }>(
      'SELECT outcome, task_id FROM coremachine.claim_limited_batch($1::text[], $2::int[], $3::float8[], $4::int[], $5::text[], $6::text[], $7)',
      [taskIds, taskIds.map(() => 1), taskIds.map(() => 60), taskIds.map(() => 10), taskIds.map(() => 'dl:'), taskIds.map(() => null), 'host-locked'],
    );
  let lockedGotT1 = false;
  let fast: Awaited<ReturnType<ConcurrencyClaims['claim']>> = [];
  try {
    await locked.query('BEGIN');
    // The locked way: holds the key's lock to its commit.
    expect((await callLocked([t0])).rows).toEqual([{ outcome: 'claimed', task_id: t0 }]);
    // The fast way claims t1 and t2, then waits for the key.
    const fastClaim = claims.claim([t1, t2].map((taskId) => ({ taskId, attempt: 1, leaseSeconds: 60, limit: 10, defaultKey: 'dl:', singleKey: 'dl:' })));
    for (let waited = 0; (await count("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")) === 0; waited++) {
      if (waited > 500) throw new Error('the fast claim never waited for the key');
      await sleep(10);
    }
    // The locked claim now wants t1, which the fast claim holds: each waits for the other.
    try {
      lockedGotT1 = (await callLocked([t1])).rows.some((r) => r.task_id === t1 && r.outcome === 'claimed');
      await locked.query('COMMIT');
    } catch (error) {
      expect((error as { code?: string }).code).toBe('40P01');
      await locked.query('ROLLBACK');
    }
    fast = await fastClaim;
  } finally {
    locked.release();
  }
  const fastGotT1 = fast[0]?.kind === 'claimed';
  // Whichever PostgreSQL chose to fail, t1 is claimed exactly once, by the side that went on.
  expect([lockedGotT1, fastGotT1].filter(Boolean)).toHaveLength(1);
  expect(fast[1]?.kind).toBe('claimed');
  const running = await db.pool.query<{ task_id: string; worker_id: string }>(
    "SELECT task_id, worker_id FROM coremachine.tasks WHERE job_id = 'dl' AND status = 'PROCESSING' ORDER BY task_id",
  );
  expect(running.rows.find((r) => r.task_id === t1)?.worker_id).toBe(lockedGotT1 ? 'host-locked' : 'host-fast');
  // The locked side's t0 ran only if it committed.
  expect(running.rows.some((r) => r.task_id === t0)).toBe(lockedGotT1);
  expect(await slotDisagreements(db.pool)).toEqual([]);
  await stopJob('dl');
}, 30_000);

test('one session keeps one tally per key however many claims and settles it makes', async () => {
  const ids = await queuedTasks('one', 12);
  const pool = createPool(db.url, { max: 1 });
  try {
    const request = (taskId: string) => ({ taskId, attempt: 1, leaseSeconds: 60, limit: 100, defaultKey: 'one:', singleKey: 'one:' });
    for (let i = 0; i < 12; i += 3) {
      const batch = await claimLimitedBatch(pool, ids.slice(i, i + 3).map(request), 'host-one');
      expect(batch.claimed).toHaveLength(3);
      // Given back (a transient fault): out of PROCESSING, freed by the same session.
      await releaseClaims(
        pool,
        batch.claimed.slice(0, 1).map((t) => ({ taskId: t.task_id, claimId: t.claim_id })),
      );
    }
    const pid = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const rows = await db.pool.query("SELECT backend_pid, held::int FROM coremachine.limit_slot_tallies WHERE limit_key = 'one:'");
    // Four claims of 3 and four releases of 1: one row, counting the 8 still running.
    expect(rows.rows).toEqual([{ backend_pid: pid, held: 8 }]);
  } finally {
    await pool.end();
  }
  await stopJob('one');
});

test('two janitors recounting at once book a difference once, both ways: a tally too high is lowered, one too low raised', async () => {
  const over = await queuedTasks('over', 2);
  const under = await queuedTasks('under', 2);
  const request = (key: string) => (taskId: string) => ({ taskId, attempt: 1, leaseSeconds: 60, limit: 10, defaultKey: key, singleKey: key });
  expect((await claimLimitedBatch(db.pool, over.map(request('over:')), 'host-a')).claimed).toHaveLength(2);
  expect((await claimLimitedBatch(db.pool, under.map(request('under:')), 'host-a')).claimed).toHaveLength(2);
  // Two slots counted for tasks gone, one running task not counted.
  await db.pool.query("INSERT INTO coremachine.limit_slot_tallies (limit_key, backend_pid, held) VALUES ('over:', 0, 2), ('under:', 0, -1)");
  const first = await db.pool.connect();
  const second = await db.pool.connect();
  try {
    await first.query('BEGIN');
    await second.query('BEGIN');
    expect(await lockSlotRecount(first)).toBe(true);
    // The second janitor finds the recount taken and skips it: had it recounted in its own
    // snapshot, before the first commits, it would book the same difference a second time.
    expect(await lockSlotRecount(second)).toBe(false);
    expect(await reconcileSlotTallies(first)).toEqual({ freed: 2, restored: 1 });
    await first.query('COMMIT');
    await second.query('COMMIT');
    await second.query('BEGIN');
    expect(await lockSlotRecount(second)).toBe(true);
    expect(await reconcileSlotTallies(second)).toEqual({ freed: 0, restored: 0 });
    await second.query('COMMIT');
  } finally {
    first.release();
    second.release();
  }
  expect(await slotDisagreements(db.pool)).toEqual([]);
  await stopJob('over');
  await stopJob('under');
});

test("folding moves the tallies of exited sessions to the key's pid-0 tally, deletes those at 0, and leaves a live session's alone", async () => {
  const live = await db.pool.connect();
  try {
    const pid = (await live.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const gone = (await live.query<{ pid: number }>('SELECT max(pid) + 1000 AS pid FROM pg_stat_activity')).rows[0]!.pid;
    // Sums to 0, as no task of the key runs: a session gone that claimed 2, a live one that freed 3, and 1 booked to pid 0.
    await live.query(
      "INSERT INTO coremachine.limit_slot_tallies (limit_key, backend_pid, held) VALUES ('fold:', $1, 2), ('fold:', $2, -3), ('fold:', 0, 1), ('fold0:', $2, 0)",
      [gone, pid],
    );
    // Other tests' sessions have exited too: their tallies are folded along (each key's sum unchanged).
    expect(await foldSlotTallies(db.pool, 1000)).toBeGreaterThanOrEqual(2);
    const rows = async () =>
      (
        await db.pool.query<{ limit_key: string; backend_pid: number; held: number }>(
          "SELECT limit_key, backend_pid, held::int FROM coremachine.limit_slot_tallies WHERE limit_key LIKE 'fold%' ORDER BY 1, 2",
        )
      ).rows;
    expect(await rows()).toEqual([
      { limit_key: 'fold:', backend_pid: 0, held: 3 },
      { limit_key: 'fold:', backend_pid: pid, held: -3 },
    ]);
    // A tally its session is writing is skipped, not waited for; pid 0's at 0 is deleted.
    await live.query('BEGIN');
    await live.query("UPDATE coremachine.limit_slot_tallies SET held = 0 WHERE limit_key = 'fold:' AND backend_pid = $1", [pid]);
    await db.pool.query("UPDATE coremachine.limit_slot_tallies SET held = 0 WHERE limit_key = 'fold:' AND backend_pid = 0");
    await foldSlotTallies(db.pool, 1000);
    expect(await rows()).toEqual([{ limit_key: 'fold:', backend_pid: pid, held: -3 }]);
    await live.query('COMMIT');
    // At 0 now, the live session's is deleted too: it writes a new one when it next claims or settles.
    await foldSlotTallies(db.pool, 1000);
    expect(await rows()).toEqual([]);
  } finally {
    live.release();
  }
});

test('recounts and folds made while many sessions claim and settle a key find nothing to correct', async () => {
  const task = defineTask({
    type: 'slots.busy',
    parameters: Indexed,
    concurrency: { limit: 10_000 },
    handler: async ({ i }) => {
      await sleep(i % 4);
      return i;
    },
  });
  const cluster = await startLimitsCluster(db.url, [jobOf('slots.busy_job', task)], 3, 8);
  const corrections: Array<[number, number]> = [];
  let sweeps = 0;
  try {
    const { job } = await cluster.machines[0]!.submitJob('slots.busy_job', { n: 600 });
    let done = false;
    const janitors = [0, 1, 2].map(async (m) => {
      while (!done) {
        const report = await cluster.machines[m]!.sweep();
        corrections.push([report.freedStaleSlots, report.restoredSlots]);
        sweeps++;
      }
    });
    const finished = await waitForJob(cluster.machines[1]!, job.jobId, 60_000);
    done = true;
    await Promise.all(janitors);
    expect([finished.status, finished.result]).toEqual(['COMPLETED', 600]);
  } finally {
    await cluster.stop();
  }
  expect(sweeps).toBeGreaterThan(3);
  expect(corrections.filter(([freed, restored]) => freed + restored > 0)).toEqual([]);
}, 90_000);
