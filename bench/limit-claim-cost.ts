/**
 * What a concurrency limit adds to the statements of one task, measured in one database session:
 * the claim of a batch (coremachine.claim_limited_batch against the unlimited claim) and its settle
 * (the same settle statement, freeing slots or not). bench:limits measures a whole job on 4
 * instances, where the two cores are shared by everything and a few microseconds per task are lost
 * in the run-to-run spread; here nothing else runs, so a change to these statements shows.
 *
 *   npm run bench:limit-claims -- [--batch 40] [--held 4] [--blocks 30] [--limit 10000]
 *
 * Each variant (limited, unlimited) claims batches of `--batch` QUEUED tasks in task-id order, keeps
 * `--held` batches running (so a key holds slots, as in a run) and settles the oldest after each
 * claim; the settled tasks are then put back to QUEUED (not timed), so the same rows are claimed
 * again. The variants alternate in blocks of 50 claims, and the table gives each one's median block:
 * microseconds per task as the client sees them, round trip and commit included, and the CPU the
 * session's backend spent on each statement (from /proc/<pid>/schedstat, to the nanosecond: unlike
 * the client's time it holds no wait for the disk or the scheduler). Read the claim
 * and the settle together: a limited claim commits without waiting for its WAL flush
 * (lockLimitKey in core/state/limits-store.ts says why), so the settle after it, which waits,
 * flushes the claim's WAL too, and part of what the claim saves shows up in the settle's column.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createPool } from '../core/db/pool';
import { migrate } from '../core/db/migrator';
import { claimLimitedBatch } from '../core/state/limits-store';
import { claimTasks, settleTasks, type ClaimedTask } from '../core/state/tasks-store';
import { createDatabase, dropDatabase, findServer } from './server';
import { median } from './stats';

const TASKS = 4_000;
const BLOCK = 50;

function parseFlags(): { batch: number; held: number; blocks: number; limit: number } {
  const { values } = parseArgs({
    options: {
      batch: { type: 'string', default: '40' },
      held: { type: 'string', default: '4' },
      blocks: { type: 'string', default: '30' },
      limit: { type: 'string', default: '10000' },
    },
  });
  const integer = (name: 'batch' | 'held' | 'blocks' | 'limit', min: number): number => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return value;
  };
  const flags = { batch: integer('batch', 1), held: integer('held', 0), blocks: integer('blocks', 1), limit: integer('limit', 1) };
  // The key holds (held + 1) batches at the claim's count: past the limit, claims would defer and the bench would measure deferrals.
  if ((flags.held + 1) * flags.batch > flags.limit) throw new Error('--limit must be at least (--held + 1) x --batch: the limit must never bind');
  if ((flags.held + 1) * flags.batch > TASKS) throw new Error(`(--held + 1) x --batch must be at most ${TASKS}`);
  return flags;
}

/** A job PROCESSING its one stage, of TASKS QUEUED tasks (with the slot key, for the limited variant). */
async function seedJob(pool: pg.Pool, jobId: string, limitKey: string | null): Promise<string[]> {
  await pool.query(
    `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters) VALUES ($1, 'bench.claims', 'PROCESSING', 1, 1, '{}')`,
    [jobId],
  );
  await pool.query(`INSERT INTO coremachine.stages (job_id, stage, name, status, total) VALUES ($1, 1, 'all', 'PROCESSING', $2)`, [jobId, TASKS]);
  await pool.query(
    `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, attempt, remote, limit_key)
     SELECT $1 || '-' || lpad(i::text, 6, '0'), $1, 1, i, 'bench.claim', 'QUEUED', '{"i": 1}', 0, false, $3 FROM generate_series(0, $2 - 1) i`,
    [jobId, TASKS, limitKey],
  );
  return Array.from({ length: TASKS }, (_, i) => `${jobId}-${String(i).padStart(6, '0')}`);
}

interface Step {
  claimUs: number;
  settleUs: number | null;
  claimCpuUs: number;
  settleCpuUs: number | null;
}

interface Variant {
  /** One claim, and the settle of the oldest batch held: µs per task of each, as the client waited and as the backend spent CPU. */
  step(): Promise<Step>;
}

/** CPU nanoseconds the backend has run so far (it runs on this machine: findServer accepts no other). */
function backendNs(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

function variant(
  pool: pg.Pool,
  backendPid: number,
  taskIds: string[],
  flags: { batch: number; held: number; limit: number },
  limitKey: string | null,
): Variant {
  let next = 0;
  const running: ClaimedTask[][] = [];
  return {
    async step() {
      const ids = Array.from({ length: flags.batch }, () => taskIds[next++ % taskIds.length] as string);
      const claimCpuAt = backendNs(backendPid);
      const claimedAt = process.hrtime.bigint();
      const claimed =
        limitKey === null
          ? await claimTasks(
              pool,
              ids.map((taskId) => ({ taskId, attempt: 1 })),
              ids.map(() => 60),
              'bench',
            )
          : (
              await claimLimitedBatch(
                pool,
                ids.map((taskId) => ({ taskId, attempt: 1, leaseSeconds: 60, limit: flags.limit, defaultKey: limitKey, singleKey: limitKey })),
                'bench',
              )
            ).claimed;
      const claimUs = Number(process.hrtime.bigint() - claimedAt) / 1000 / flags.batch;
      const claimCpuUs = (backendNs(backendPid) - claimCpuAt) / 1000 / flags.batch;
      if (claimed.length !== flags.batch) throw new Error(`a claim took ${claimed.length} of ${flags.batch} tasks`);
      running.push(claimed);
      if (running.length <= flags.held) return { claimUs, settleUs: null, claimCpuUs, settleCpuUs: null };
      const oldest = running.shift() as ClaimedTask[];
      const settleCpuAt = backendNs(backendPid);
      const settledAt = process.hrtime.bigint();
      const settled = await settleTasks(
        pool,
        oldest.map((task) => ({ taskId: task.task_id, jobId: task.job_id, claimId: task.claim_id, result: 1 })),
      );
      const settleUs = Number(process.hrtime.bigint() - settledAt) / 1000 / flags.batch;
      const settleCpuUs = (backendNs(backendPid) - settleCpuAt) / 1000 / flags.batch;
      if (settled.tasks.length !== oldest.length) throw new Error(`a settle took ${settled.tasks.length} of ${oldest.length} tasks`);
      await pool.query(
        `UPDATE coremachine.tasks SET status = 'QUEUED', attempt = 0, result = NULL, started_at = NULL, finished_at = NULL WHERE task_id = ANY($1)`,
        [oldest.map((task) => task.task_id)],
      );
      return { claimUs, settleUs, claimCpuUs, settleCpuUs };
    },
  };
}

async function main(): Promise<void> {
  const flags = parseFlags();
  const server = await findServer((line) => process.stderr.write(`${line}\n`));
  const database = await createDatabase(server.adminUrl, 'limit_claims', {});
  // One connection: one session, so every statement runs on the same backend with its plans cached.
  const pool = createPool(database.url, { max: 1 });
  try {
    await migrate(pool);
    // The pool's one connection, so the one backend whose CPU each statement is measured on.
    const backendPid = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number;
    const variants: Array<[string, Variant]> = [
      ['limited', variant(pool, backendPid, await seedJob(pool, 'lim', 'bench.claim:'), flags, 'bench.claim:')],
      ['unlimited', variant(pool, backendPid, await seedJob(pool, 'unl', null), flags, null)],
    ];
    await pool.query('VACUUM ANALYZE');
    for (const [, v] of variants) for (let i = 0; i < 2 * BLOCK; i++) await v.step(); // warm-up: plans cached, pages read
    type Part = 'claim' | 'settle' | 'claimCpu' | 'settleCpu';
    const parts: Part[] = ['claim', 'settle', 'claimCpu', 'settleCpu'];
    const blocks = new Map(
      variants.map(([label]) => [label, { claim: [] as number[], settle: [] as number[], claimCpu: [] as number[], settleCpu: [] as number[] }]),
    );
    for (let block = 0; block < flags.blocks; block++) {
      for (const [label, v] of variants) {
        const sums = { claim: 0, settle: 0, claimCpu: 0, settleCpu: 0 };
        // The first steps of a run hold their batches and settle none.
        let settled = 0;
        for (let i = 0; i < BLOCK; i++) {
          const step = await v.step();
          sums.claim += step.claimUs;
          sums.claimCpu += step.claimCpuUs;
          if (step.settleUs !== null && step.settleCpuUs !== null) {
            sums.settle += step.settleUs;
            sums.settleCpu += step.settleCpuUs;
            settled++;
          }
        }
        const of = blocks.get(label);
        for (const part of parts) of?.[part].push(sums[part] / (part === 'claim' || part === 'claimCpu' ? BLOCK : Math.max(1, settled)));
      }
    }
    process.stdout.write(
      `one session, batches of ${flags.batch}, ${flags.held} held, limit ${flags.limit}, ${flags.blocks} blocks of ${BLOCK} claims per variant (medians)\n`,
    );
    process.stdout.write('µs per task    client: claim  settle   both   PostgreSQL CPU: claim  settle   both\n');
    const row = (label: string, value: (part: Part) => number): string =>
      `${label.padEnd(12)} ${value('claim').toFixed(1).padStart(15)} ${value('settle').toFixed(1).padStart(7)} ${(value('claim') + value('settle')).toFixed(1).padStart(6)}` +
      ` ${value('claimCpu').toFixed(1).padStart(22)} ${value('settleCpu').toFixed(1).padStart(7)} ${(value('claimCpu') + value('settleCpu')).toFixed(1).padStart(6)}\n`;
    const of = (label: string) => blocks.get(label) as Record<Part, number[]>;
    for (const [label] of variants) process.stdout.write(row(label, (part) => median(of(label)[part])));
    // Block by block, as the variants alternate: the limit's extra in the same stretch of time.
    process.stdout.write(row('extra', (part) => median(of('limited')[part].map((value, i) => value - (of('unlimited')[part][i] as number)))));
  } finally {
    await pool.end();
    await dropDatabase(server.adminUrl, database.name);
    await server.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
