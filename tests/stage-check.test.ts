import type pg from 'pg';
import { CoreMachine } from '../core/engine/core-machine';
import { Outbox } from '../core/engine/outbox';
import { recordTaskOutcomes } from '../core/engine/task-outcomes';
import { UnitOfWork } from '../core/engine/unit-of-work';
import { commit } from '../core/engine/commit';
import { afterCommit } from '../core/engine/after-commit';
import type { Transport } from '../core/transport/transport';
import { checkStage, probeCallsForCheck, type StageCheck } from '../core/engine/stage-check';
import { claimTasks } from '../core/state/tasks-store';
import { captureLogger, startHarness, useTestDatabase, type Harness } from './support/harness';
import { receiveTaskBodies } from './support/task-messages';

/**
 * Result commits do not lock the job row: the stage check that follows a commit does (see
 * core/engine/stage-check.ts). These tests drive that split from many backends at once and check
 * the two promises it must keep: exactly one transition per stage, and no deadlock between the
 * lock orders of result commits (tasks → stage), failures and cancels (job → tasks → stage).
 */

const db = useTestDatabase({ poolMax: 4 });

/** Deadlocks PostgreSQL detected in this test's database (a retried 40P01 is invisible otherwise). */
async function deadlocks(): Promise<number> {
  // Backends report their counters when idle, at most once a second: wait for those reports.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const client = await db.pool.connect();
  try {
    await client.query('SELECT pg_stat_clear_snapshot()');
    const result = await client.query<{ deadlocks: string }>('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()');
    return Number(result.rows[0]?.deadlocks ?? 0);
  } finally {
    client.release();
  }
}

/** Twenty engines, each with its own one-connection pool: twenty backends committing at once. */
async function engines(h: Harness): Promise<{ machines: CoreMachine[]; pools: pg.Pool[] }> {
  const pools = Array.from({ length: 20 }, () => db.newPool(1));
  const machines = await Promise.all(
    pools.map((pool) => CoreMachine.create({ pool, registry: h.registry, transport: h.transport, logger: captureLogger([]) })),
  );
  return { machines, pools };
}

async function startStage(h: Harness, jobType: string, parameters: unknown, n: number) {
  const { job } = await h.machine.submitJob(jobType, parameters);
  const [jobMessage] = h.transport.jobs.receive(1);
  await h.machine.processJobMessage(jobMessage?.body);
  // One body per task, packs unpacked as the host does, each committed on its own below.
  const taskMessages = receiveTaskBodies(h.transport.tasks, n).bodies.map((body) => ({ body }));
  expect(taskMessages).toHaveLength(n);
  return { jobId: job.jobId, taskMessages };
}

async function transitionsTo(jobId: string, status: string): Promise<number> {
  const result = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM coremachine.events WHERE job_id = $1 AND entity = 'job' AND to_status = $2`, [
    jobId,
    status,
  ]);
  return Number(result.rows[0]?.n ?? 0);
}

test('ten failures past a tolerance of 2, committed from 20 backends at once: the job fails exactly once, with one of their errors, and nothing deadlocks', async () => {
  const n = 200;
  const failing = Array.from({ length: 10 }, (_, i) => i * 17);
  const h = await startHarness(db.pool, { worker: false });
  const before = await deadlocks();
  const { jobId, taskMessages } = await startStage(h, 'test.tolerant_job', { n, failing }, n);
  const { machines } = await engines(h);

  await Promise.all(taskMessages.map((message, i) => machines[i % machines.length]!.processTaskMessages([message.body])));

  const view = await h.machine.getJob(jobId);
  expect(view.status).toBe('FAILED');
  expect(view.error?.type).toBe('TaskHandlerError');
  expect(failing.map((index) => `task ${index} exploded`).some((text) => view.error?.message.includes(text))).toBe(true);
  expect(await transitionsTo(jobId, 'FAILED')).toBe(1);
  // Fail fast past the tolerance: nothing is left QUEUED or PROCESSING.
  const open = await db.pool.query(`SELECT 1 FROM coremachine.tasks WHERE job_id = $1 AND status IN ('QUEUED','PROCESSING')`, [jobId]);
  expect(open.rowCount).toBe(0);
  expect((await deadlocks()) - before).toBe(0);
  await h.stop();
});

test('an operator cancel racing 200 completions on 20 backends: one terminal transition, no deadlock, nothing left open', async () => {
  const n = 200;
  const h = await startHarness(db.pool, { worker: false });
  const before = await deadlocks();
  const { jobId, taskMessages } = await startStage(h, 'test.three_stages', { n, tag: 'cancel-race' }, n);
  const { machines } = await engines(h);

  const completions = Promise.all(taskMessages.map((message, i) => machines[i % machines.length]!.processTaskMessages([message.body])));
  // Cancel in the thick of it: after some results have committed, while others are committing.
  await new Promise((resolve) => setTimeout(resolve, 20));
  await h.machine.cancelJob(jobId);
  await completions;

  const view = await h.machine.getJob(jobId);
  expect(view.status).toBe('CANCELLED');
  expect(await transitionsTo(jobId, 'CANCELLED')).toBe(1);
  // Whatever committed before the cancel stays COMPLETED; the rest was cancelled, not lost.
  const counts = await db.pool.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM coremachine.tasks WHERE job_id = $1 GROUP BY status`, [
    jobId,
  ]);
  const byStatus = Object.fromEntries(counts.rows.map((row) => [row.status, Number(row.n)]));
  expect((byStatus.COMPLETED ?? 0) + (byStatus.CANCELLED ?? 0)).toBe(n);
  expect((await deadlocks()) - before).toBe(0);
  await h.stop();
});

test('a stage check lost with its process (stage past its tolerance, job still PROCESSING) is run by the janitor: the job fails with the first failed task', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { jobId, taskMessages } = await startStage(h, 'test.tolerant_job', { n: 5, failing: [] }, 5);
  // The state a crash right after the result commit leaves: three failures counted, no check run.
  const taskIds = taskMessages.slice(0, 3).map((m) => (m.body as { taskId: string }).taskId);
  await db.pool.query(
    `UPDATE coremachine.tasks SET status = 'FAILED', error = jsonb_build_object('type', 'Error', 'message', 'lost ' || task_index, 'taskId', task_id),
            started_at = now(), finished_at = now() WHERE task_id = ANY($1::text[])`,
    [taskIds],
  );
  await db.pool.query('UPDATE coremachine.stages SET failed = 3 WHERE job_id = $1 AND stage = 1', [jobId]);

  const report = await h.machine.sweep({ stallAfterMs: 0 });
  expect(report.stalled.find((s) => s.jobId === jobId)).toMatchObject({ action: 'failed' });
  const view = await h.machine.getJob(jobId);
  expect(view.status).toBe('FAILED');
  expect(view.error).toMatchObject({ type: 'Error', message: 'lost 0' });
  // A second sweep finds nothing more to do for it: the check is idempotent.
  const again = await h.machine.sweep({ stallAfterMs: 0 });
  expect(again.stalled.find((s) => s.jobId === jobId)).toBeUndefined();
  expect(await transitionsTo(jobId, 'FAILED')).toBe(1);
  await h.stop();
});

test('the last two results committed at once on different shards: neither transaction sees the total, the probe after commit does, and the job advances once', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { jobId, taskMessages } = await startStage(h, 'test.three_stages', { n: 2, tag: 'two-shards' }, 2);
  const claimed = await claimTasks(
    db.pool,
    taskMessages.map((m) => ({ taskId: (m.body as { taskId: string }).taskId, attempt: 1 })),
    [60, 60],
  );
  expect(claimed).toHaveLength(2);
  // Two open transactions whose counts land in different shards (shard = backend pid % 16). The
  // pid is read inside each transaction: behind PgBouncer in transaction mode, that is the server
  // connection the transaction keeps until it ends, not one a later transaction would get.
  const pool = db.newPool(6);
  const clients = await Promise.all(Array.from({ length: 6 }, () => pool.connect()));
  const shards = await Promise.all(
    clients.map(async (client) => {
      await client.query('BEGIN');
      return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid % 16;
    }),
  );
  const second = shards.findIndex((shard) => shard !== shards[0]);
  expect(second).toBeGreaterThan(0);
  const [a, b] = [clients[0]!, clients[second]!];
  const context = () => ({ registry: h.registry, logger: captureLogger([]) });
  let checks: StageCheck[] = [];
  try {
    const committedA = await recordTaskOutcomes(a, [{ taskId: claimed[0]!.task_id, jobId, claimId: claimed[0]!.claim_id, result: { value: 0 } }]);
    const committedB = await recordTaskOutcomes(b, [{ taskId: claimed[1]!.task_id, jobId, claimId: claimed[1]!.claim_id, result: { value: 1 } }]);
    checks = [...committedA.after.stageChecks, ...committedB.after.stageChecks];
    await a.query('COMMIT');
    await b.query('COMMIT');
  } finally {
    // The other transactions only picked the shards: they end without having written anything.
    for (const client of clients) {
      await client.query('ROLLBACK');
      client.release();
    }
  }
  // Neither saw 2 of 2: both left a probe, not a check.
  expect(checks).toEqual([expect.objectContaining({ probe: true }), expect.objectContaining({ probe: true })]);
  expect((await h.machine.getJob(jobId)).status).toBe('PROCESSING');
  // After the commits, each probe reads the counts again and finds the stage done.
  expect(await Promise.all(checks.map((check) => probeCallsForCheck(db.pool, check)))).toEqual([true, true]);
  const intents = await Promise.all(
    checks.map(async (check) => {
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        const out = await checkStage(client, context(), check);
        await client.query('COMMIT');
        return out;
      } finally {
        client.release();
      }
    }),
  );
  // Exactly one of the two checks advanced the job (one job message for stage 2).
  expect(
    intents.flatMap((after) => after.intents).map((intent) => (intent.kind === 'job' ? `job message for stage ${intent.message.stage}` : intent.kind)),
  ).toEqual(['job message for stage 2']);
  const advanced = await h.machine.getJob(jobId);
  expect(advanced).toMatchObject({ status: 'QUEUED', stage: 2 });
  expect(advanced.stages[0]).toMatchObject({ status: 'COMPLETED', completed: 2 });
  // The job message that checkStage's intent stands for was not sent here: leave nothing behind.
  await h.machine.cancelJob(jobId);
  await h.stop();
});

test('a send that fails after a result commit does not hold the stage check back: the job advances, the failed send stays in the outbox, the error is thrown', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { jobId, taskMessages } = await startStage(h, 'test.three_stages', { n: 2, tag: 'send-fails' }, 2);
  const claimed = await claimTasks(
    db.pool,
    taskMessages.map((m) => ({ taskId: (m.body as { taskId: string }).taskId, attempt: 1 })),
    [60, 60],
  );
  // Task messages cannot be sent; job messages can (the stage check's own send).
  const transport: Transport = Object.assign(Object.create(h.transport) as Transport, {
    sendTaskMessages: () => Promise.reject(new Error('task queue unreachable')),
  });
  const uow = new UnitOfWork(db.pool, new Outbox(db.pool, transport), { registry: h.registry, logger: captureLogger([]) });
  // What the engine does with every unit of work: commit, then run the stage checks it calls for.
  const retry = { taskId: claimed[0]!.task_id, jobId, stage: 1, taskType: 'test.value', attempt: 9 };
  await expect(
    commit(uow, async ({ client }) => {
      const committed = await recordTaskOutcomes(
        client,
        claimed.map((task, i) => ({ taskId: task.task_id, jobId, claimId: task.claim_id, result: { value: i } })),
      );
      // A message this commit also owes (as a retry would): its send is the one that fails.
      return { value: committed.settled, ...afterCommit(committed.after, { intents: [{ kind: 'task' as const, jobId, message: retry }] }) };
    }),
  ).rejects.toThrow('task queue unreachable');
  expect(await h.machine.getJob(jobId)).toMatchObject({ status: 'QUEUED', stage: 2 });
  const outbox = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM coremachine.outbox WHERE job_id = $1 AND kind = 'task'`, [jobId]);
  expect(outbox.rows[0]?.n).toBe(1);
  await h.machine.cancelJob(jobId);
  await h.stop();
});
