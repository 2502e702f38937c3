import type pg from 'pg';
import { CoreMachine } from '../../core/engine/core-machine';
import { createLogger, type Logger } from '../../core/logger';
import { Registry } from '../../core/registry';
import { InProcessTransport } from '../../core/transport/in-process-transport';
import type { QueueOptions } from '../../core/transport/in-process-queue';
import type { Transport } from '../../core/transport/transport';
import { InProcessWorker, type WorkerOptions } from '../../core/worker';
import { appRegistry } from './registry';
import { makeTestJobs, SideEffects, type TaskHook } from './test-jobs';
import { createTestDatabase, type TestDatabase } from './test-database';

export interface Harness {
  machine: CoreMachine;
  transport: InProcessTransport;
  worker: InProcessWorker | undefined;
  registry: Registry;
  effects: SideEffects;
  logs: string[];
  stop(): Promise<void>;
}

/** Logs are captured, not printed, so tests can assert on what operators would see. */
export function captureLogger(lines: string[]): Logger {
  return createLogger('debug', {}, (line) => lines.push(line));
}

export async function startHarness(
  pool: pg.Pool,
  options: {
    queue?: Partial<QueueOptions>;
    worker?: Partial<WorkerOptions> | false;
    beforeTask?: TaskHook;
    wrapTransport?: (transport: InProcessTransport) => Transport;
  } = {},
): Promise<Harness> {
  const effects = new SideEffects();
  const registry = appRegistry(...makeTestJobs(effects, { beforeTask: options.beforeTask }).jobs);
  const transport = new InProcessTransport(options.queue);
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const machine = await CoreMachine.create({ pool, registry, transport: options.wrapTransport?.(transport) ?? transport, logger });
  const worker =
    options.worker === false
      ? undefined
      : new InProcessWorker(machine, transport, logger, { taskBatchSize: 16, taskConcurrency: 4, jobConcurrency: 2, ...options.worker });
  return {
    machine,
    transport,
    worker,
    registry,
    effects,
    logs,
    stop: async () => {
      await worker?.stop();
      await transport.close();
    },
  };
}

/** Waits until the job leaves QUEUED/PROCESSING (or the timeout passes) and returns it. */
export async function waitForJob(machine: CoreMachine, jobId: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await machine.getJob(jobId);
    if (!['QUEUED', 'PROCESSING'].includes(job.status) || Date.now() > deadline) return job;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The invariant every test file checks after each test: nothing left QUEUED or PROCESSING. */
export async function stuckJobs(pool: pg.Pool): Promise<Array<{ job_id: string; status: string; stage: number }>> {
  const result = await pool.query<{ job_id: string; status: string; stage: number }>(
    "SELECT job_id, status, stage FROM coremachine.jobs WHERE status IN ('QUEUED','PROCESSING')",
  );
  return result.rows;
}

/**
 * Where the concurrency slots disagree with the task rows (029_limit_slot_tallies.sql): a running
 * task with a slot key and no slot claim (the limit could be exceeded: never allowed), or a key
 * whose tallies sum to more or fewer than its tasks running with a slot claim (more: a way out of
 * PROCESSING that did not free its slot, which would idle until the janitor's recount; fewer: a
 * claim that did not count its slots). Both read in one snapshot, where they must agree exactly.
 * Every test ends with none of these.
 */
export async function slotDisagreements(pool: pg.Pool): Promise<Array<{ task_id: string; problem: string }>> {
  const result = await pool.query<{ task_id: string; problem: string }>(
    `SELECT t.task_id, 'running without its slot' AS problem FROM coremachine.tasks t
      WHERE t.status = 'PROCESSING' AND t.limit_key IS NOT NULL AND t.slot_claim IS NULL
     UNION ALL
     SELECT 'key ' || limit_key, 'tallies count ' || COALESCE(s.held, 0) || ' for ' || COALESCE(r.running, 0) || ' running'
       FROM (SELECT limit_key, sum(held) AS held FROM coremachine.limit_slot_tallies GROUP BY 1) s
       FULL JOIN (SELECT limit_key, count(*) AS running FROM coremachine.tasks WHERE status = 'PROCESSING' AND slot_claim IS NOT NULL GROUP BY 1) r
       USING (limit_key)
      WHERE COALESCE(s.held, 0) <> COALESCE(r.running, 0)
     ORDER BY 1`,
  );
  return result.rows;
}

/**
 * A fresh database for the test file, dropped after it, and after each test the invariants that no
 * job is left QUEUED or PROCESSING and that the concurrency slots agree with the task rows. The
 * returned object forwards to the database the hooks create.
 */
export function useTestDatabase(options: { poolMax?: number; checkAfterEach?: boolean } = {}): TestDatabase {
  let db: TestDatabase | undefined;
  const current = (): TestDatabase => {
    if (!db) throw new Error('test database was not created (use it inside tests or hooks)');
    return db;
  };
  beforeAll(async () => {
    db = await createTestDatabase({ ...(options.poolMax ? { poolMax: options.poolMax } : {}) });
  });
  afterAll(async () => {
    await db?.drop();
  });
  if (options.checkAfterEach ?? true) {
    afterEach(async () => {
      if (!db) return;
      expect(await stuckJobs(db.pool)).toEqual([]);
      expect(await slotDisagreements(db.pool)).toEqual([]);
    });
  }
  return {
    get url() {
      return current().url;
    },
    get pool() {
      return current().pool;
    },
    newPool: (max) => current().newPool(max),
    drop: () => current().drop(),
  };
}

/**
 * The lifecycle most test files share: useTestDatabase plus a fresh harness per test, its workers
 * drained after each test. Returns getters, since the values exist only once the hooks have run.
 */
export function useHarnessPerTest(options: Parameters<typeof startHarness>[1] = {}) {
  // jest runs afterEach hooks in declaration order: the invariant is checked below, after the drain.
  const db = useTestDatabase({ checkAfterEach: false });
  let harness: Harness | undefined;
  beforeEach(async () => {
    harness = await startHarness(db.pool, options);
  });
  afterEach(async () => {
    await harness?.worker?.drain();
    await harness?.stop();
    expect(await stuckJobs(db.pool)).toEqual([]);
  });
  return {
    db: () => db,
    h: () => {
      if (!harness) throw new Error('harness was not started');
      return harness;
    },
    /** Replaces the per-test harness (e.g. with test-specific hooks); the old one is stopped. */
    restart: async (restartOptions: Parameters<typeof startHarness>[1]) => {
      await harness?.stop();
      harness = await startHarness(db.pool, restartOptions);
      return harness;
    },
  };
}
