import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { CoreMachine } from '../core/engine/core-machine';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { countsBetween } from '../core/transport/operation-counts';
import { InProcessWorker } from '../core/worker';
import { AzureBlobPayloadStore } from '../core/payloads/azure-blob-store';
import { DEFAULT_PAYLOAD_LIMITS, Payloads } from '../core/payloads/payloads';
import { benchJob, benchOneStageJob, benchTwoStagesJob, BENCH_JOB_TYPE, BENCH_JOB_TYPES_BY_STAGES, SIZED_JOB_TYPE, sizedJob } from './bench-job';
import { migrateBenchDatabase } from './database-setup';
import type { PayloadMeasures, PayloadSpec, RunSpec } from './protocol';
import type { SqlCounter } from './sql-counter';
import { sleep } from './stats';
import { deadlineError, type Execution, type SystemRun } from './system-run';

/**
 * The engine exactly as `coremachine dev` runs it: CoreMachine + InProcessTransport +
 * InProcessWorker on one pool. Stage creation is timed by wrapping the instance's
 * processJobMessage (the whole job-message transaction: compare-and-set, fan-out, stage and task
 * inserts, outbox row, commit, dispatch of N task messages, outbox delete).
 */
export function coreMachineRun(spec: RunSpec, counter: SqlCounter): SystemRun {
  let pool: pg.Pool | undefined;
  let transport: InProcessTransport | undefined;
  let worker: InProcessWorker | undefined;
  let machine: CoreMachine | undefined;
  const stageCreateMs: number[] = [];
  const stageDispatchMs: number[] = [];

  return {
    async setup() {
      await migrateBenchDatabase(spec.databaseUrl);
    },

    async start() {
      pool = counter.createPool(spec.databaseUrl, spec.poolSize, 'cm-bench-coremachine');
      const logger = createLogger('warn');
      const registry = new Registry().register(benchJob, benchOneStageJob, benchTwoStagesJob, sizedJob);
      transport = new InProcessTransport(spec.maxPackedTasks === undefined ? {} : { maxPackedTasks: spec.maxPackedTasks });
      // A stage's N task messages go out in one send after its transaction commits.
      const sendTaskMessages = transport.sendTaskMessages.bind(transport);
      transport.sendTaskMessages = async (messages) => {
        const started = performance.now();
        await sendTaskMessages(messages);
        if (messages.length > spec.batchSize) stageDispatchMs.push(performance.now() - started);
      };
      machine = await CoreMachine.create({ pool, registry, transport, logger, ...(spec.payload ? { payloads: payloadsFor(spec.payload) } : {}) });
      const processJobMessage = machine.processJobMessage.bind(machine);
      machine.processJobMessage = async (body: unknown) => {
        const started = performance.now();
        const outcome = await processJobMessage(body);
        if (outcome.kind === 'started') stageCreateMs.push(performance.now() - started);
        return outcome;
      };
      worker = new InProcessWorker(machine, transport, logger, {
        taskBatchSize: spec.batchSize,
        taskConcurrency: spec.workers,
        jobConcurrency: spec.jobConcurrency,
      });
    },

    async execute(): Promise<Execution> {
      if (!machine || !transport) throw new Error('start() was not called');
      // The poller is its own connection, outside the counted pool; its transactions are subtracted.
      const poller = new pg.Client({ connectionString: spec.databaseUrl, application_name: 'cm-bench-poller' });
      await poller.connect();
      let polls = 0;
      try {
        // Disk per task: every coremachine table, TOAST and index, after the run less before it.
        const tablesBefore = await coremachineBytes(poller);
        polls++;
        const operationsBefore = transport.operations().snapshot();
        const started = performance.now();
        const { job } = spec.payload
          ? await machine.submitJob(SIZED_JOB_TYPE, { n: spec.n, runId: randomUUID(), resultBytes: spec.payload.resultBytes })
          : await machine.submitJob(
              BENCH_JOB_TYPES_BY_STAGES[spec.stages] ?? BENCH_JOB_TYPE,
              { n: spec.n, runId: randomUUID(), fanInFromResults: spec.fanInFromResults },
              // One key: every claim goes through the fair-share path, and the share never binds.
              spec.system === 'coremachine-fair' ? { fairnessKey: 'bench' } : {},
            );
        const deadline = started + spec.timeoutMs;
        let status: string = job.status;
        while (status === 'QUEUED' || status === 'PROCESSING') {
          if (performance.now() > deadline) throw deadlineError(`CoreMachine job of ${spec.stages} x ${spec.n}`, spec.timeoutMs);
          await sleep(spec.pollMs);
          polls++;
          const row = await poller.query<{ status: string }>('SELECT status FROM coremachine.jobs WHERE job_id = $1', [job.jobId]);
          status = row.rows[0]?.status ?? 'MISSING';
        }
        const elapsedMs = performance.now() - started;
        if (status !== 'COMPLETED') throw new Error(`bench job ended ${status}`);
        // The last batch settles after its commit made the job COMPLETED: its completes count too.
        await worker?.drain();
        const serviceBus = countsBetween(operationsBefore, transport.operations().snapshot());
        polls += 2;
        const timings = await stageTimings(poller, job.jobId, spec.n);
        const payload = spec.payload ? await payloadMeasures(poller, spec.payload, tablesBefore, spec.n * spec.stages) : undefined;
        if (payload) polls += 2;
        const analyzed = await autoAnalyzedAt(poller, started);
        const taskHotUpdateShare = await hotUpdateShare(poller);
        const diskBytesPerTask = ((await coremachineBytes(poller)) - tablesBefore) / (spec.n * spec.stages);
        polls++;
        const notes = [
          analyzed === null ? 'tasks table not auto-analyzed during the run' : `tasks table auto-analyzed ${Math.round(analyzed)} ms after submit`,
          `disk ${Math.round(diskBytesPerTask)} B per task (coremachine tables, TOAST and indexes, dead row versions included)`,
        ];
        return {
          elapsedMs,
          stageCreateMs,
          stageDispatchMs,
          ...timings,
          uncountedTransactions: polls,
          autoAnalyzedAfterMs: analyzed,
          taskHotUpdateShare,
          notes,
          serviceBus,
          ...(payload ? { payload } : {}),
        };
      } finally {
        await poller.end();
      }
    },

    async stop() {
      await worker?.stop();
      await transport?.close();
      await pool?.end();
    },
  };
}

/**
 * --result-bytes: results inline up to a cap large enough for the largest size measured, or in a
 * payload store on the orchestrator's Azurite above `inlineMaxBytes`.
 */
function payloadsFor(payload: PayloadSpec): Payloads {
  const limits = { ...DEFAULT_PAYLOAD_LIMITS, inlineCapBytes: 64 * 1024 * 1024, inlineMaxBytes: payload.inlineMaxBytes };
  if (payload.store === 'none' || !payload.connectionString) return new Payloads(undefined, limits);
  return new Payloads(new AzureBlobPayloadStore({ connectionString: payload.connectionString, container: payload.container ?? 'bench-payloads' }), limits);
}

/** Every coremachine table with its TOAST and indexes, in bytes (dead row versions included, as the run left them). */
async function coremachineBytes(db: pg.Client): Promise<number> {
  const result = await db.query<{ bytes: string }>(
    `SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::text AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'coremachine' AND c.relkind = 'r'`,
  );
  return Number(result.rows[0]?.bytes ?? 0);
}

async function payloadMeasures(db: pg.Client, payload: PayloadSpec, bytesBefore: number, tasks: number): Promise<PayloadMeasures> {
  const stored = await db.query<{ stored: string; bytes: string }>(
    `SELECT count(*) FILTER (WHERE result_ref IS NOT NULL)::text AS stored, COALESCE(sum((result_ref->>'size')::bigint), 0)::text AS bytes FROM coremachine.tasks`,
  );
  return {
    resultBytes: payload.resultBytes,
    store: payload.store,
    pgBytesPerTask: ((await coremachineBytes(db)) - bytesBefore) / tasks,
    blobBytesPerTask: Number(stored.rows[0]?.bytes ?? 0) / tasks,
    storedShare: Number(stored.rows[0]?.stored ?? 0) / tasks,
  };
}

/**
 * Whether autovacuum analyzed coremachine.tasks while the job ran, and when (ms after submit).
 * Plans of the task statements differ with and without statistics, so this explains outliers.
 */
async function autoAnalyzedAt(db: pg.Client, startedPerf: number): Promise<number | null> {
  const result = await db.query<{ ms_ago: number | null }>(
    `SELECT extract(epoch FROM clock_timestamp() - last_autoanalyze) * 1000 AS ms_ago
       FROM pg_stat_user_tables WHERE relid = 'coremachine.tasks'::regclass`,
  );
  const msAgo = result.rows[0]?.ms_ago;
  if (msAgo === null || msAgo === undefined) return null;
  return performance.now() - Number(msAgo) - startedPerf;
}

/**
 * HOT updates keep a row's new version on its page without new index entries (migration 015): the
 * share of task-row updates that were HOT. Backends report their counts at most once a second, so
 * this waits that long with the pool idle first; null when no update was reported at all.
 */
async function hotUpdateShare(db: pg.Client): Promise<number | null> {
  await sleep(1_100);
  await db.query('SELECT pg_stat_clear_snapshot()');
  const result = await db.query<{ upd: string; hot: string }>(
    "SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relid = 'coremachine.tasks'::regclass",
  );
  const upd = Number(result.rows[0]?.upd ?? 0);
  return upd > 0 ? Number(result.rows[0]?.hot ?? 0) / upd : null;
}

/** Hand-overs from the tasks and stages tables (timestamps are each statement's transaction start). */
async function stageTimings(db: pg.Client, jobId: string, n: number) {
  const result = await db.query<{ stage: number; completed: number; first_start: number; last_finish: number; stage_started: number; stage_finished: number }>(
    `SELECT t.stage,
            count(*) FILTER (WHERE t.status = 'COMPLETED')::int AS completed,
            extract(epoch FROM min(t.started_at)) * 1000 AS first_start,
            extract(epoch FROM max(t.finished_at)) * 1000 AS last_finish,
            extract(epoch FROM s.started_at) * 1000 AS stage_started,
            extract(epoch FROM s.finished_at) * 1000 AS stage_finished
       FROM coremachine.tasks t JOIN coremachine.stages s USING (job_id, stage)
      WHERE t.job_id = $1 GROUP BY t.stage, s.started_at, s.finished_at ORDER BY t.stage`,
    [jobId],
  );
  const rows = result.rows.map((row) => ({
    ...row,
    first_start: Number(row.first_start),
    last_finish: Number(row.last_finish),
    stage_started: Number(row.stage_started),
  }));
  for (const row of rows) {
    if (row.completed !== n) throw new Error(`stage ${row.stage} has ${row.completed} completed tasks, expected ${n}`);
  }
  const handoverMs: number[] = [];
  const handoverAdvanceMs: number[] = [];
  const handoverStartMs: number[] = [];
  for (let i = 1; i < rows.length; i++) {
    const previous = rows[i - 1];
    const next = rows[i];
    if (!previous || !next) continue;
    handoverMs.push(next.first_start - previous.last_finish);
    handoverAdvanceMs.push(next.stage_started - previous.last_finish);
    handoverStartMs.push(next.first_start - next.stage_started);
  }
  return { handoverMs, handoverAdvanceMs, handoverStartMs };
}
