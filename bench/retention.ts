/**
 * Retention figures for docs/operating.md and bench/README.md: bytes per task on disk, purge rate, and the janitor sweep's
 * time with 1,000,000 finished tasks in the database. Measured, never asserted.
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && node dist/bench-build/bench/retention.js [--jobs 1000] [--tasks-per-job 1000] [--skip-size]
 *
 * (npm run build first: jobs/ imports `coremachine`, which the compiled bench resolves to dist/package/.)
 *
 * Uses DATABASE_URL (loopback only), else 127.0.0.1:5432, else an embedded PostgreSQL, in a fresh
 * database that is dropped at the end.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createPool } from '../core/db/pool';
import { migrate } from '../core/db/migrator';
import { CoreMachine } from '../core/engine/core-machine';
import { Outbox } from '../core/engine/outbox';
import { DEFAULT_RETENTION, purgeExpiredJobs } from '../core/engine/retention';
import { UnitOfWork } from '../core/engine/unit-of-work';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { registration } from '../jobs';
import { createDatabase, dropDatabase, findServer } from './server';

const TABLES = ['jobs', 'stages', 'tasks', 'events', 'outbox', 'dead_letters'] as const;
const log = (line: string) => process.stderr.write(`${line}\n`);

async function diskBytes(pool: pg.Pool): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  for (const table of TABLES) {
    const result = await pool.query<{ bytes: string }>(`SELECT pg_total_relation_size('coremachine.${table}')::text AS bytes`);
    sizes[table] = Number(result.rows[0]?.bytes ?? 0);
  }
  return sizes;
}

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = process.hrtime.bigint();
  const value = await work();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, value };
}

/** A real 10,000-task fan-out (hello_world n=10000: two stages, 20,000 tasks) through the engine. */
async function measureBytesPerTask(pool: pg.Pool): Promise<{ tasks: number; bytes: Record<string, number>; bytesPerTask: number }> {
  const transport = new InProcessTransport();
  const logger = createLogger('silent');
  const machine = await CoreMachine.create({ pool, registry: new Registry().register(...registration.jobs), transport, logger });
  const worker = new InProcessWorker(machine, transport, logger, { taskBatchSize: 32, taskConcurrency: 8, jobConcurrency: 2 });
  const { job } = await machine.submitJob('hello_world', { n: 10_000 });
  for (;;) {
    const current = await machine.getJob(job.jobId);
    if (!['QUEUED', 'PROCESSING'].includes(current.status)) {
      if (current.status !== 'COMPLETED') throw new Error(`bench job ended ${current.status}`);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await worker.stop();
  await transport.close();
  // Let autovacuum-free numbers be comparable: the size as the run left it, dead tuples included.
  const bytes = await diskBytes(pool);
  const tasks = Number((await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM coremachine.tasks')).rows[0]?.n ?? 0);
  const total = Object.values(bytes).reduce((a, b) => a + b, 0);
  return { tasks, bytes, bytesPerTask: Math.round(total / tasks) };
}

/** jobs × tasksPerJob finished tasks, with the events a real run writes (claim + completion per task), set-based. */
async function generate(pool: pg.Pool, jobs: number, tasksPerJob: number): Promise<void> {
  await pool.query(
    `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters, result, created_at, updated_at, started_at, finished_at)
     SELECT encode(sha256(('gen-' || j)::bytea), 'hex'), 'hello_world', 'COMPLETED', 1, 1, jsonb_build_object('n', $2::int, 'j', j), '{"replies": 1}',
            now() - interval '2 days', now() - interval '1 day', now() - interval '2 days', now() - interval '1 day'
       FROM generate_series(1, $1::int) j`,
    [jobs, tasksPerJob],
  );
  await pool.query(
    `INSERT INTO coremachine.stages (job_id, stage, name, status, total, completed, started_at, finished_at)
     SELECT job_id, 1, 'greet', 'COMPLETED', $1::int, $1::int, started_at, finished_at FROM coremachine.jobs WHERE job_id IN (SELECT encode(sha256(('gen-' || j)::bytea), 'hex') FROM generate_series(1, $2::int) j)`,
    [tasksPerJob, jobs],
  );
  await pool.query(
    `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, result, attempt, created_at, started_at, finished_at)
     SELECT j.job_id || '-s1-t' || i, j.job_id, 1, i, 'hello_world.greet', 'COMPLETED', jsonb_build_object('index', i),
            jsonb_build_object('index', i, 'greeting', 'Hello from task ' || i), 1, j.started_at, j.started_at, j.finished_at
       FROM coremachine.jobs j CROSS JOIN generate_series(0, $1::int - 1) i WHERE j.job_type = 'hello_world' AND j.parameters ? 'j'`,
    [tasksPerJob],
  );
  await pool.query(
    `INSERT INTO coremachine.events (job_id, entity, stage, task_id, from_status, to_status, attempt, at)
     SELECT t.job_id, 'task', 1, t.task_id, f.from_status, f.to_status, 1, t.finished_at
       FROM coremachine.tasks t CROSS JOIN (VALUES ('QUEUED', 'PROCESSING'), ('PROCESSING', 'COMPLETED')) f(from_status, to_status)`,
  );
  await pool.query('VACUUM ANALYZE');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '1000' },
      'tasks-per-job': { type: 'string', default: '1000' },
      'skip-size': { type: 'boolean', default: false },
    },
  });
  const jobs = Number(values.jobs);
  const tasksPerJob = Number(values['tasks-per-job']);
  const server = await findServer(log);
  const results: Record<string, unknown> = { server: server.origin };
  for (const label of values['skip-size'] ? (['sweep'] as const) : (['size', 'sweep'] as const)) {
    const database = await createDatabase(server.adminUrl, `retention_${label}`, {});
    const pool = createPool(database.url, 10);
    try {
      await migrate(pool);
      const machine = await CoreMachine.create({
        pool,
        registry: new Registry().register(...registration.jobs),
        transport: new InProcessTransport(),
        logger: createLogger('silent'),
        retentionDays: 30,
      });
      if (label === 'size') {
        log('running hello_world n=10000 through the engine…');
        const size = await measureBytesPerTask(pool);
        results.bytesPerTask = size;
        log(`bytes per task: ${size.bytesPerTask} (${size.tasks} tasks; ${JSON.stringify(size.bytes)})`);
        await pool.query(`UPDATE coremachine.jobs SET finished_at = now() - interval '31 days'`);
        const purge = await timed(() => machine.sweep());
        results.purgeOneJob = {
          ms: Math.round(purge.ms),
          purged: purge.value.purged,
          tasksPerSecond: Math.round(purge.value.purged.tasks / (purge.ms / 1000)),
        };
        log(`purge of that job: ${JSON.stringify(results.purgeOneJob)}`);
        continue;
      }
      log(`generating ${jobs} jobs × ${tasksPerJob} finished tasks…`);
      const generated = await timed(() => generate(pool, jobs, tasksPerJob));
      const counts = (
        await pool.query<{ tasks: string; events: string }>(
          'SELECT (SELECT count(*) FROM coremachine.tasks)::text AS tasks, (SELECT count(*) FROM coremachine.events)::text AS events',
        )
      ).rows[0];
      log(`generated in ${Math.round(generated.ms)} ms: ${counts?.tasks} tasks, ${counts?.events} events`);
      // Nothing due: the sweep every minute on a full, healthy database.
      const idle: number[] = [];
      for (let i = 0; i < 5; i++) idle.push((await timed(() => machine.sweep())).ms);
      // The retention step alone, nothing due: one index probe of jobs_finished_idx.
      const idleRetention: number[] = [];
      const unitOfWork = new UnitOfWork(pool, new Outbox(pool, new InProcessTransport()), { registry: new Registry(), logger: createLogger('silent') });
      for (let i = 0; i < 5; i++) idleRetention.push((await timed(() => purgeExpiredJobs(unitOfWork, { ...DEFAULT_RETENTION, retentionDays: 30 }))).ms);
      const bytesBefore = Object.values(await diskBytes(pool)).reduce((a, b) => a + b, 0);
      // A third of the jobs falls out of the window: one sweep deletes up to its bound.
      await pool.query(
        `UPDATE coremachine.jobs SET finished_at = now() - interval '40 days' WHERE job_id IN (SELECT job_id FROM coremachine.jobs ORDER BY job_id LIMIT $1)`,
        [Math.floor(jobs / 3)],
      );
      const purging: Array<{ ms: number; jobs: number; tasks: number; events: number; batches: number }> = [];
      for (;;) {
        const sweep = await timed(() => machine.sweep());
        if (sweep.value.purged.jobs === 0) break;
        purging.push({
          ms: Math.round(sweep.ms),
          jobs: sweep.value.purged.jobs,
          tasks: sweep.value.purged.tasks,
          events: sweep.value.purged.events,
          batches: sweep.value.purged.batches,
        });
      }
      const deletedTasks = purging.reduce((a, p) => a + p.tasks, 0);
      const purgeMs = purging.reduce((a, p) => a + p.ms, 0);
      results.sweep = {
        finishedTasks: Number(counts?.tasks),
        events: Number(counts?.events),
        bytesOnDisk: bytesBefore,
        idleSweepMs: idle.map((ms) => Math.round(ms)),
        idleRetentionStepMs: idleRetention.map((ms) => Math.round(ms * 10) / 10),
        purgingSweeps: purging,
        purgeTasksPerSecond: Math.round(deletedTasks / (purgeMs / 1000)),
      };
      log(`sweep with ${counts?.tasks} finished tasks: ${JSON.stringify(results.sweep)}`);
    } finally {
      await pool.end();
      await dropDatabase(server.adminUrl, database.name);
    }
  }
  await server.stop();
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

main().catch((error: unknown) => {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
