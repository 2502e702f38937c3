import { EventEmitter } from 'node:events';
import pg from 'pg';
import { z } from 'zod';
import {
  Logger,
  run,
  runMigrations,
  makeWorkerUtils,
  type AddJobsJobSpec,
  type Runner,
  type TaskList,
  type WorkerEvents,
  type WorkerUtils,
} from 'graphile-worker';
import { createStageCounters } from './database-setup';
import type { RunSpec } from './protocol';
import type { SqlCounter } from './sql-counter';
import { sleep } from './stats';
import { deadlineError, type Execution, type SystemRun } from './system-run';

const TASK = 'bench_noop';
const ADD_CHUNK = 10_000;
const Payload = z.object({ stage: z.number().int(), i: z.number().int() });

/**
 * The same workload on graphile-worker (library mode): 3 stages x N no-op jobs. Each job bumps
 * its stage's counter row (`UPDATE … RETURNING n`, its own transaction, as graphile-worker has no
 * way to do user work inside the job-completion transaction); the job that sees n = N adds the
 * next stage's N jobs with addJobs. Done when every job has been completed in the database.
 */
export function graphileRun(spec: RunSpec, counter: SqlCounter): SystemRun {
  let pool: pg.Pool | undefined;
  let runner: Runner | undefined;
  let utils: WorkerUtils | undefined;
  const events = new EventEmitter() as WorkerEvents;
  const total = spec.n * spec.stages;
  let finished = 0;
  let failures = 0;
  let onFinished: (() => void) | undefined;
  const firstStart = new Map<number, number>();
  const lastCompletion = new Map<number, number>();
  const silent = new Logger(() => (level, message) => {
    if (String(level) === 'error') process.stderr.write(`[graphile-worker] ${message}\n`);
  });

  const specsFor = (stage: number, from: number, to: number): AddJobsJobSpec[] =>
    Array.from({ length: to - from }, (_, k) => ({ identifier: TASK, payload: { stage, i: from + k } }));

  const taskList: TaskList = {
    [TASK]: async (payload, helpers) => {
      const { stage } = Payload.parse(payload);
      if (!firstStart.has(stage)) firstStart.set(stage, performance.now());
      const { rows } = await helpers.query<{ n: number }>('UPDATE bench_stage_counter SET n = n + 1 WHERE stage = $1 RETURNING n', [stage]);
      if (rows[0]?.n !== spec.n) return;
      lastCompletion.set(stage, performance.now());
      if (stage >= spec.stages) return;
      for (let from = 0; from < spec.n; from += ADD_CHUNK) {
        await helpers.addJobs(specsFor(stage + 1, from, Math.min(spec.n, from + ADD_CHUNK)));
      }
    },
  };

  events.on('job:complete', ({ error }) => {
    if (error) failures++;
    if (++finished === total) onFinished?.();
  });

  return {
    async setup() {
      await runMigrations({ connectionString: spec.databaseUrl, logger: silent });
      await createStageCounters(spec.databaseUrl, spec.stages);
    },

    async start() {
      pool = counter.createPool(spec.databaseUrl, spec.poolSize, 'cm-bench-graphile');
      utils = await makeWorkerUtils({ pgPool: pool, logger: silent });
      const { concurrency, localQueueSize, completeJobBatchDelayMs } = spec.graphile;
      // concurrency is a run() option; localQueue and the batch delays only exist in the preset.
      runner = await run({
        pgPool: pool,
        concurrency,
        taskList,
        noHandleSignals: true,
        logger: silent,
        events,
        preset: {
          worker: {
            ...(localQueueSize > 0 ? { localQueue: { size: localQueueSize } } : {}),
            completeJobBatchDelay: completeJobBatchDelayMs,
            failJobBatchDelay: completeJobBatchDelayMs,
          },
        },
      });
    },

    async execute(): Promise<Execution> {
      if (!utils) throw new Error('start() was not called');
      const allDone = new Promise<void>((resolve) => (onFinished = resolve));
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(deadlineError(`graphile-worker 3 x ${spec.n}`, spec.timeoutMs)), spec.timeoutMs);
      });
      try {
        for (let from = 0; from < spec.n; from += ADD_CHUNK) {
          await utils.addJobs(specsFor(1, from, Math.min(spec.n, from + ADD_CHUNK)));
        }
        await Promise.race([allDone, timeout]);
        // job:complete fires before the completion is written; wait until the queue table is empty.
        const polls = await waitForEmptyQueue(spec, started);
        const elapsedMs = performance.now() - started;
        if (failures > 0) throw new Error(`${failures} graphile-worker jobs failed`);
        return {
          elapsedMs,
          ...handovers(spec.stages, firstStart, lastCompletion),
          uncountedTransactions: polls,
          settings: { ...spec.graphile, pool: spec.poolSize },
        };
      } finally {
        clearTimeout(timer);
      }
    },

    async stop() {
      await runner?.stop();
      await utils?.release();
      await pool?.end();
    },
  };
}

async function waitForEmptyQueue(spec: RunSpec, started: number): Promise<number> {
  const client = new pg.Client({ connectionString: spec.databaseUrl, application_name: 'cm-bench-poller' });
  await client.connect();
  let polls = 0;
  try {
    for (;;) {
      polls++;
      const result = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs');
      if ((result.rows[0]?.n ?? 0) === 0) return polls;
      if (performance.now() - started > spec.timeoutMs) throw deadlineError('graphile-worker queue drain', spec.timeoutMs);
      await sleep(spec.pollMs);
    }
  } finally {
    await client.end();
  }
}

/** In-process: the job that saw its stage's counter reach N → the first job of the next stage starting. */
function handovers(stages: number, firstStart: Map<number, number>, lastCompletion: Map<number, number>) {
  const handoverMs: number[] = [];
  for (let stage = 1; stage < stages; stage++) {
    const last = lastCompletion.get(stage);
    const first = firstStart.get(stage + 1);
    if (last !== undefined && first !== undefined) handoverMs.push(first - last);
  }
  return { handoverMs };
}
