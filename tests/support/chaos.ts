import { createHash } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { defineJob, defineTask, TaskFailure, type JobQueueMessage, type TaskQueueMessage } from '../../models';
import { CoreMachine } from '../../core/engine/core-machine';
import { createLogger } from '../../core/logger';
import { Registry } from '../../core/registry';
import { InProcessTransport } from '../../core/transport/in-process-transport';
import type { Transport } from '../../core/transport/transport';
import { InProcessWorker } from '../../core/worker';
import type { TestDatabase } from './test-database';

export interface ChaosOptions {
  seed: number;
  jobs: number;
  tasksPerStage: number;
  pDuplicate: number;
  pSendFailure: number;
  pTransient: number;
  pPermanent: number;
  pCrash: number;
  pSlow: number;
  killEveryMs: number;
  timeoutMs: number;
}

export const DEFAULT_CHAOS: ChaosOptions = {
  seed: 20261122,
  jobs: 100,
  tasksPerStage: 20,
  pDuplicate: 0.05,
  pSendFailure: 0.02,
  pTransient: 0.03,
  pPermanent: 0.0003,
  pCrash: 0.003,
  pSlow: 0.003,
  killEveryMs: 500,
  timeoutMs: 150_000,
};

/** A number in [0, 1) fixed by seed and key: the same run injects the same task faults. */
export function roll(seed: number, key: string): number {
  return createHash('sha256').update(`${seed}:${key}`).digest().readUInt32BE(0) / 2 ** 32;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ChaosReport {
  injected: Record<string, number>;
  recovered: Record<string, number>;
  outcome: Record<string, number>;
  elapsedMs: number;
}

/**
 * Runs `jobs` jobs of 3 stages × tasksPerStage tasks through two engines (separate pools, one
 * transport) while injecting faults, then waits for every job to reach a terminal state.
 */
export async function runChaos(db: TestDatabase, options: ChaosOptions): Promise<ChaosReport> {
  const injected: Record<string, number> = {
    duplicatedMessages: 0,
    sendFailuresAfterCommit: 0,
    transientErrors: 0,
    permanentErrors: 0,
    crashesInHandler: 0,
    slowHandlers: 0,
    connectionsKilled: 0,
  };
  const count = (kind: string) => (injected[kind] = (injected[kind] ?? 0) + 1);
  await db.pool.query('CREATE TABLE IF NOT EXISTS chaos_effects (task_id text PRIMARY KEY, value integer NOT NULL)');
  const executions = new Map<string, number>();
  const effectsPool = db.newPool(4);

  const work = defineTask({
    type: 'chaos.work',
    parameters: z.object({ index: z.number().int(), value: z.number().int() }),
    leaseSeconds: 1,
    retry: { maxAttempts: 6, initialDelayMs: 10, maxDelayMs: 100, jitter: 0.5 },
    handler: async ({ index, value }, ctx) => {
      executions.set(ctx.taskId, (executions.get(ctx.taskId) ?? 0) + 1);
      // Keyed by execution too: a host that died is not a property of the task, so a lost lease's re-run rolls again.
      const r = roll(options.seed, `${ctx.taskId}:${ctx.attempt}:${executions.get(ctx.taskId) ?? 0}`);
      let p = options.pCrash;
      if (r < p) {
        // The worker "dies": no heartbeat, its lease runs out, the task is re-claimed; when this
        // zombie wakes up its result must be rejected by the claim fence.
        count('crashesInHandler');
        await sleep(1500 + 1500 * roll(options.seed, `${ctx.taskId}:wake`));
      } else if (r < (p += options.pPermanent)) {
        count('permanentErrors');
        throw new TaskFailure(`chaos: permanent failure of task ${index}`, { nonRetryable: true });
      } else if (r < (p += options.pTransient)) {
        count('transientErrors');
        throw new Error(`chaos: transient failure of task ${index} attempt ${ctx.attempt}`);
      } else if (r < (p += options.pSlow)) {
        count('slowHandlers');
        await sleep(700);
      }
      // The side effect is idempotent by task id, as it must be under at-least-once delivery.
      await effectsPool.query('INSERT INTO chaos_effects (task_id, value) VALUES ($1, $2) ON CONFLICT (task_id) DO NOTHING', [ctx.taskId, value]);
      return { index, value };
    },
  });
  const n = options.tasksPerStage;
  const chaosJob = defineJob({ type: 'chaos.job', parameters: z.object({ id: z.number().int() }) })
    .stage({ name: 'seed', task: work, fanOut: () => Array.from({ length: n }, (_, index) => ({ index, value: index })) })
    .stage({ name: 'double', task: work, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ index: r.index, value: r.value * 2 })) })
    .stage({ name: 'increment', task: work, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ index: r.index, value: r.value + 1 })) })
    .finalize(async ({ previous }) => ({ sum: (await previous.all()).reduce((total, r) => total + r.value, 0) }));
  const registry = new Registry().register(chaosJob);

  const inner = new InProcessTransport({ lockDurationMs: 1000, maxDeliveryCount: 10 });
  let sends = 0;
  const chaosSend = async <M extends JobQueueMessage | TaskQueueMessage>(
    messages: readonly M[],
    send: (m: readonly M[]) => Promise<void>,
    idOf: (m: M) => string,
  ) => {
    const key = `send:${messages.map(idOf).join(',')}:${sends++}`;
    if (roll(options.seed, key) < options.pSendFailure) {
      count('sendFailuresAfterCommit');
      throw new Error('chaos: process crashed between commit and send');
    }
    const out: M[] = [];
    for (const message of messages) {
      out.push(message);
      if (roll(options.seed, `dup:${idOf(message)}`) < options.pDuplicate) {
        count('duplicatedMessages');
        out.push(message);
      }
    }
    await send(out);
  };
  const transport: Transport = {
    name: 'chaos',
    durable: false,
    sendReceipt: (queue, receipt, properties) => inner.sendReceipt(queue, receipt, properties),
    close: () => inner.close(),
    backlog: () => inner.backlog(),
    scheduleTaskMessages: (m, at) => inner.scheduleTaskMessages(m, at),
    publishEvents: (events) => inner.publishEvents(events),
    sendTaskMessages: (m) =>
      chaosSend(
        m,
        (x) => inner.sendTaskMessages(x),
        (x) => `${x.taskId}:${x.attempt}`,
      ),
    sendJobMessages: (m) =>
      chaosSend(
        m,
        (x) => inner.sendJobMessages(x),
        (x) => `${x.jobId}:${x.stage}`,
      ),
  };

  const logger = createLogger('silent');
  const pools = [db.newPool(6), db.newPool(6)];
  // A "crash" is a handler that goes silent: nothing may keep its lease alive, as nothing would for a dead host.
  const machines = await Promise.all(pools.map((pool) => CoreMachine.create({ pool, registry, transport, logger, extendLeases: false })));
  const workers = machines.map(
    (machine) =>
      new InProcessWorker(machine, inner, logger, {
        // Locks are renewed while a handler runs, as the Functions host does (host.json); duplicated
        // messages delivered side by side are what exercise redelivery while a handler still runs.
        taskBatchSize: 8,
        taskConcurrency: 6,
        jobConcurrency: 3,
        autoRenewLock: true,
        janitorIntervalMs: 250,
        janitor: { stallAfterMs: 2000, outboxAgeMs: 300 },
      }),
  );

  const admin = db.newPool(1);
  await admin.query("SET application_name = 'chaos-killer'");
  const killer = setInterval(() => {
    admin
      .query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'coremachine' AND pid <> pg_backend_pid()
          ORDER BY random() LIMIT 1`,
      )
      .then((result) => (injected.connectionsKilled = (injected.connectionsKilled ?? 0) + result.rows.filter((row) => row.killed).length))
      .catch(() => undefined); // The killer only injects faults; a failed kill injects nothing.
  }, options.killEveryMs);

  const started = Date.now();
  const jobIds: string[] = [];
  for (let id = 0; id < options.jobs; id++) jobIds.push(await submitWithRetry(machines[id % 2] as CoreMachine, id));
  let pending = jobIds.length;
  while (Date.now() - started < options.timeoutMs) {
    pending =
      (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM coremachine.jobs WHERE status IN ('QUEUED','PROCESSING','PAUSED')")).rows[0]?.n ?? -1;
    if (pending === 0) break;
    await sleep(200);
  }
  clearInterval(killer);
  const elapsedMs = Date.now() - started;
  // Zombies still asleep wake up and hit the fence before we read the final state.
  await sleep(3100);
  await Promise.all(workers.map((worker) => worker.drain()));
  await Promise.all(workers.map((worker) => worker.stop()));
  await transport.close();

  const janitor = (
    await admin.query<{ requeued: number; failed: number; outbox: number; resent: number; sweeps: number }>(
      'SELECT COALESCE(sum(requeued_tasks),0)::int AS requeued, COALESCE(sum(failed_tasks),0)::int AS failed, COALESCE(sum(outbox_sent),0)::int AS outbox, COALESCE(sum(resent_jobs),0)::int AS resent, count(*)::int AS sweeps FROM coremachine.janitor_runs',
    )
  ).rows[0];
  const reclaims =
    (
      await admin.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM coremachine.events WHERE entity = 'task' AND from_status = 'PROCESSING' AND to_status = 'PROCESSING'",
      )
    ).rows[0]?.n ?? 0;
  const deadLetters = (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.dead_letters')).rows[0]?.n ?? 0;
  const statuses = await admin.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM coremachine.jobs GROUP BY status');
  const totalExecutions = [...executions.values()].reduce((a, b) => a + b, 0);
  return {
    injected,
    recovered: {
      leasesExpiredAndRequeued: janitor?.requeued ?? 0,
      leasesExpiredAndFailed: janitor?.failed ?? 0,
      outboxRowsResent: janitor?.outbox ?? 0,
      jobMessagesResent: janitor?.resent ?? 0,
      janitorSweeps: janitor?.sweeps ?? 0,
      claimsTakenOverAfterExpiry: reclaims,
      duplicateDeliveries: inner.tasks.stats.delivered + inner.jobs.stats.delivered - inner.tasks.stats.sent - inner.jobs.stats.sent,
      locksExpiredWhileRunning: inner.tasks.stats.lockExpired + inner.jobs.stats.lockExpired,
      deadLettered: deadLetters,
      handlerExecutions: totalExecutions,
    },
    outcome: { ...Object.fromEntries(statuses.rows.map((row) => [row.status, row.n])), stillPending: pending },
    elapsedMs,
  };
}

async function submitWithRetry(machine: CoreMachine, id: number): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await machine.submitJob('chaos.job', { id })).job.jobId;
    } catch (error) {
      // A killed connection fails the submission; resubmitting is safe because it is idempotent.
      if (attempt >= 10) throw error;
      await sleep(20);
    }
  }
}

export async function invariantViolations(pool: pg.Pool, tasksPerStage: number): Promise<string[]> {
  const problems: string[] = [];
  const q = async (label: string, sql: string) => {
    const rows = (await pool.query(sql)).rows as unknown[];
    if (rows.length > 0) problems.push(`${label}: ${JSON.stringify(rows.slice(0, 5))}${rows.length > 5 ? ` … (${rows.length})` : ''}`);
  };
  await q('jobs not terminal', "SELECT job_id, status, stage FROM coremachine.jobs WHERE status IN ('QUEUED','PROCESSING','PAUSED')");
  await q('tasks still PROCESSING', "SELECT task_id, attempt FROM coremachine.tasks WHERE status = 'PROCESSING'");
  await q(
    'stage counters differ from task rows',
    `SELECT s.job_id, s.stage, s.completed, s.failed, c.completed AS real_completed, c.failed AS real_failed
       FROM coremachine.stage_progress s
       JOIN (SELECT job_id, stage, count(*) FILTER (WHERE status = 'COMPLETED')::int AS completed, count(*) FILTER (WHERE status = 'FAILED')::int AS failed
               FROM coremachine.tasks GROUP BY job_id, stage) c USING (job_id, stage)
      WHERE s.completed <> c.completed OR s.failed <> c.failed`,
  );
  await q(
    'COMPLETED job with a wrong result or stage counts',
    `SELECT j.job_id, j.result FROM coremachine.jobs j WHERE j.status = 'COMPLETED'
        AND ((j.result->>'sum')::int <> ${tasksPerStage * tasksPerStage}
          OR (SELECT count(*) FROM coremachine.stage_progress s WHERE s.job_id = j.job_id AND s.completed = ${tasksPerStage} AND s.total = ${tasksPerStage}) <> 3)`,
  );
  await q(
    'COMPLETED task without its side effect, or with the wrong one',
    `SELECT t.task_id FROM coremachine.tasks t LEFT JOIN chaos_effects e USING (task_id)
      WHERE t.status = 'COMPLETED' AND (e.task_id IS NULL OR e.value <> (t.result->>'value')::int)`,
  );
  await q('FAILED job without a typed error', "SELECT job_id FROM coremachine.jobs WHERE status = 'FAILED' AND (error IS NULL OR error->>'type' IS NULL)");
  await q('outbox rows left unsent', 'SELECT id, kind, job_id FROM coremachine.outbox');
  return problems;
}
