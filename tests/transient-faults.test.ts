/**
 * Many instances, one database that cannot serve them all: four engine instances (each its own
 * pool) reach PostgreSQL through an ordinary role whose CONNECTION LIMIT is below what their pools
 * ask for, while a killer terminates their connections. Refused connections ("too many
 * connections for role"), pool acquisition timeouts and killed connections are the
 * infrastructure's faults: every job must end COMPLETED with exact counters, no task may fail
 * (the task type has a single attempt, so one transient fault counted as an attempt fails it),
 * and no message may be dead-lettered.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import { defineJob, defineTask } from '../models';
import { createPool } from '../core/db/pool';
import { isTransientDatabaseError } from '../core/db/transient-errors';
import { CoreMachine } from '../core/engine/core-machine';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { captureLogger, slotDisagreements } from './support/harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

const INSTANCES = 4;
const POOL_PER_INSTANCE = 4;
const CONNECTION_LIMIT = 7; // < INSTANCES × POOL_PER_INSTANCE = 16
const JOBS = 10;
const TASKS = 25;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let db: TestDatabase;
const role = `cm_limited_${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  db = await createTestDatabase();
  // An ordinary role: superusers are not bound by connection limits.
  await db.pool.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT ${CONNECTION_LIMIT}`);
  await db.pool.query(`GRANT USAGE ON SCHEMA coremachine TO ${role}`);
  await db.pool.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA coremachine TO ${role}`);
  await db.pool.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA coremachine TO ${role}`);
});
afterAll(async () => {
  await db.drop();
  const admin = new pg.Client({ connectionString: process.env.COREMACHINE_TEST_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`DROP ROLE IF EXISTS ${role}`);
  } finally {
    await admin.end();
  }
});

/** The test database, reached directly (not through a pooler) as the limited role. */
function limitedUrl(): string {
  const url = new URL(process.env.COREMACHINE_TEST_ADMIN_URL ?? '');
  url.username = role;
  url.password = '';
  url.pathname = new URL(db.url).pathname;
  return url.toString();
}

async function submitRetryingTransient(machine: CoreMachine, id: number): Promise<string> {
  for (;;) {
    try {
      return (await machine.submitJob('limited.job', { id })).job.jobId;
    } catch (error) {
      // What an HTTP client does with a 503: try again. Anything else fails the test.
      if (!isTransientDatabaseError(error)) throw error;
      await sleep(50);
    }
  }
}

test(`${INSTANCES} instances × pool ${POOL_PER_INSTANCE} through a role limited to ${CONNECTION_LIMIT} connections, connections killed: every job COMPLETED exactly, no failed task, no dead letter`, async () => {
  const executions = new Map<string, number>();
  const work = defineTask({
    type: 'limited.work',
    parameters: z.object({ index: z.number().int(), value: z.number().int() }),
    // No retry policy: a single attempt. A transient fault counted as an attempt would fail the task.
    leaseSeconds: 20,
    // A limit that binds now and then (up to 96 tasks can be claimed at once): its slots are taken
    // and freed, and its claims deferred, on connections that die.
    concurrency: { limit: 40 },
    handler: async ({ index, value }, ctx) => {
      executions.set(ctx.taskId, (executions.get(ctx.taskId) ?? 0) + 1);
      await sleep(index % 5);
      return { index, value };
    },
  });
  const job = defineJob({ type: 'limited.job', parameters: z.object({ id: z.number().int() }) })
    .stage({ name: 'seed', task: work, fanOut: () => Array.from({ length: TASKS }, (_, index) => ({ index, value: index })) })
    .stage({ name: 'double', task: work, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ index: r.index, value: r.value * 2 })) })
    .stage({ name: 'increment', task: work, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ index: r.index, value: r.value + 1 })) })
    .finalize(async ({ previous }) => ({ sum: (await previous.all()).reduce((total, r) => total + r.value, 0) }));
  const registry = new Registry().register(job);

  const logs: string[] = [];
  const logger = captureLogger(logs);
  const transport = new InProcessTransport({ lockDurationMs: 30_000, maxDeliveryCount: 10 });
  const pools = Array.from({ length: INSTANCES }, () => createPool(limitedUrl(), { max: POOL_PER_INSTANCE, connectionTimeoutMillis: 1000 }));
  const admin = db.newPool(2);
  await admin.query("SET application_name = 'transient-test-admin'");

  // Sample how many connections the role holds: never above its limit, and the limit is reached.
  let peak = 0;
  const sampler = setInterval(() => {
    admin
      .query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [role])
      .then((result) => (peak = Math.max(peak, result.rows[0]?.n ?? 0)))
      .catch(() => undefined); // a missed sample changes nothing
  }, 20);
  let killed = 0;
  const killer = setInterval(() => {
    admin
      .query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
          WHERE usename = $1 AND datname = current_database() ORDER BY random() LIMIT 1`,
        [role],
      )
      .then((result) => (killed += result.rows.filter((row) => row.killed).length))
      .catch(() => undefined); // the killer only injects faults
  }, 200);

  const machines: CoreMachine[] = [];
  for (const pool of pools) {
    for (;;) {
      try {
        machines.push(await CoreMachine.create({ pool, registry, transport, logger }));
        break;
      } catch (error) {
        if (!isTransientDatabaseError(error)) throw error;
        await sleep(50);
      }
    }
  }
  const workers = machines.map(
    (machine) =>
      new InProcessWorker(machine, transport, logger, {
        taskBatchSize: 8,
        taskConcurrency: 3,
        jobConcurrency: 2,
        janitorIntervalMs: 500,
        janitor: { stallAfterMs: 5000, outboxAgeMs: 1000 },
        settlement: { rescheduleBaseMs: 50, rescheduleMaxMs: 1000 },
      }),
  );

  try {
    const started = Date.now();
    const jobIds = await Promise.all(Array.from({ length: JOBS }, (_, id) => submitRetryingTransient(machines[id % INSTANCES] as CoreMachine, id)));
    for (;;) {
      const open = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM coremachine.jobs WHERE status IN ('QUEUED','PROCESSING')");
      if (open.rows[0]?.n === 0 || Date.now() - started > 150_000) break;
      await sleep(100);
    }
    clearInterval(killer);
    await Promise.all(workers.map((worker) => worker.drain()));

    const jobs = await admin.query<{ job_id: string; status: string; sum: number | null }>(
      "SELECT job_id, status, (result->>'sum')::int AS sum FROM coremachine.jobs",
    );
    const expectedSum = TASKS * TASKS; // Σ (2i + 1) for i < TASKS
    expect(jobs.rows.map((row) => [row.status, row.sum]).sort()).toEqual(jobIds.map(() => ['COMPLETED', expectedSum]));
    const failedTasks = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM coremachine.tasks WHERE status <> 'COMPLETED' OR attempt <> 1");
    expect(failedTasks.rows[0]?.n).toBe(0);
    const counters = await admin.query(
      `SELECT s.job_id, s.stage FROM coremachine.stages s
        WHERE s.total <> ${TASKS} OR s.completed <> ${TASKS} OR s.failed <> 0
           OR s.completed <> (SELECT count(*) FROM coremachine.tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage AND t.status = 'COMPLETED')`,
    );
    expect(counters.rows).toEqual([]);
    expect((await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.stages')).rows[0]?.n).toBe(JOBS * 3);
    expect((await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.dead_letters')).rows[0]?.n).toBe(0);
    // A killed connection rolls its transaction back whole: the slot tallies still agree with the
    // tasks, and with every task done they hold nothing.
    expect(await slotDisagreements(admin)).toEqual([]);
    expect((await admin.query<{ n: number }>('SELECT COALESCE(sum(held), 0)::int AS n FROM coremachine.limit_slot_tallies')).rows[0]?.n).toBe(0);
    expect([transport.jobs, transport.tasks, transport.submissions].map((queue) => queue.deadLetters.length)).toEqual([0, 0, 0]);

    const rescheduled = logs.filter((line) => line.includes('rescheduled after a transient fault')).length;
    const reruns = [...executions.values()].reduce((sum, n) => sum + n - 1, 0);
    console.log(
      JSON.stringify({
        instances: INSTANCES,
        poolPerInstance: POOL_PER_INSTANCE,
        connectionLimit: CONNECTION_LIMIT,
        peakRoleConnections: peak,
        killed,
        rescheduled,
        handlerReruns: reruns,
        tasks: JOBS * 3 * TASKS,
        elapsedMs: Date.now() - started,
      }),
    );
    // The faults really happened: the role was squeezed to its limit and connections died.
    expect(peak).toBeLessThanOrEqual(CONNECTION_LIMIT);
    expect(peak).toBe(CONNECTION_LIMIT);
    expect(killed).toBeGreaterThan(0);
  } finally {
    clearInterval(killer);
    clearInterval(sampler);
    // The squeeze is over: what is checked above is the run. Four hosts stopping at once, with
    // pools of 4 each on a role of 7, can each wait for connections the others keep idle (pg-pool
    // holds an idle connection for 10 s) longer than a stop rides out faults (~12 s), and a stop
    // that cannot leave the workers view fails, as it should; that is this set-up's doing, so the
    // role's limit is lifted for the teardown.
    await db.pool.query(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
    await Promise.all(workers.map((worker) => worker.stop()));
    await transport.close();
    await Promise.all(pools.map((pool) => pool.end())); // admin is ended by db.drop()
  }
}, 240_000);
