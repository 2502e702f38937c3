import type pg from 'pg';
import { CoreMachine } from '../core/engine/core-machine';
import { Outbox } from '../core/engine/outbox';
import { recordTaskOutcomes } from '../core/engine/task-outcomes';
import { UnitOfWork } from '../core/engine/unit-of-work';
import { commit } from '../core/engine/commit';
import { afterCommit } from '../core/engine/after-commit';
import type { Transport } from '../core/transport/transport';
import { checkStage, probeCallsForCheck, type StageCheck } from '../core/engine/stage-check';
import { claimTasks, settleTasks } from '../core/state/tasks-store';
import { captureLogger, startHarness, useTestDatabase, type Harness } from './support/harness';
import { receiveTaskBodies } from './support/task-messages';

/**
 * Result commits do not lock the job row: the stage check that follows a commit does (see
 * core/engine/stage-check.ts). These tests drive that split from many backends at once and check
 * the two promises it must keep: exactly one transition per stage, and no deadlock between the
 * lock orders of result commits (tasks → stage), failures and cancels (job → tasks → stage).
 */

const db = useTestDatabase({ poolMax: 4 });

/**
 * A tasks table of the size a deployment has (20,000 finished tasks, analyzed). On a nearly empty
 * table the planner may drive a multi-task update from a scan of the table and lock its rows in
 * heap order, not task id order, and a deadlock with a cancel becomes possible: detected and
 * retried (40P01 is transient, see claimTasks), but not what these tests are about.
 */
beforeAll(async () => {
  await db.pool.query(
    `INSERT INTO coremachine.jobs (job_id, job_type, status, total_stages, parameters) VALUES ('finished-history', 'history', 'COMPLETED', 1, '{}')`,
  );
  await db.pool.query(
    `INSERT INTO coremachine.stages (job_id, stage, name, status, total, completed) VALUES ('finished-history', 1, 'history', 'COMPLETED', 20000, 20000)`,
  );
  await db.pool.query(
    `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, result, attempt, started_at, finished_at)
     SELECT 'finished-history-' || i, 'finished-history', 1, i, 'history', 'COMPLETED', '{}', '{}', 1, now(), now() FROM generate_series(0, 19999) AS i`,
  );
  await db.pool.query('ANALYZE coremachine.tasks');
});

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

test('on a table of deployment size, a multi-task settle locks its rows in task id order, as a cancel does (the order the no-deadlock tests rely on)', async () => {
  const n = 200;
  const h = await startHarness(db.pool, { worker: false });
  const { jobId } = await startStage(h, 'test.three_stages', { n, tag: 'lock-order' }, n);
  await db.pool.query(`UPDATE coremachine.tasks SET status = 'PROCESSING', attempt = 1, claim_id = gen_random_uuid(), started_at = now() WHERE job_id = $1`, [
    jobId,
  ]);
  // Statistics that count this job's tasks PROCESSING (on a table of 200 rows, they made the planner
  // hash the outcomes and scan the table: rows in heap order).
  await db.pool.query('ANALYZE coremachine.tasks');
  const claimed = await db.pool.query<{ task_id: string; claim_id: string }>(
    `SELECT task_id, claim_id FROM coremachine.tasks WHERE job_id = $1 ORDER BY ctid LIMIT $2`,
    [jobId, n / 2],
  );
  const settling = claimed.rows.map((row) => row.task_id);
  // A task that comes after others in heap order but before them in id order (t10 after t2…t9 in the
  // heap, before them in text order): the settle finds it held by another transaction.
  const pair = await db.pool.query<{ held: string }>(
    `SELECT y.task_id AS held FROM coremachine.tasks y JOIN coremachine.tasks x ON x.ctid < y.ctid AND x.task_id > y.task_id
      WHERE y.task_id = ANY($1::text[]) AND x.task_id = ANY($1::text[]) ORDER BY y.task_id LIMIT 1`,
    [settling],
  );
  const first = pair.rows[0]!.held;

  const holder = await db.pool.connect();
  const settler = await db.pool.connect();
  const prober = await db.pool.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM coremachine.tasks WHERE task_id = $1 FOR UPDATE', [first]);
    const settlerPid = (await settler.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await settler.query('BEGIN');
    const settled = settleTasks(
      settler,
      claimed.rows.map((row) => ({ taskId: row.task_id, jobId, claimId: row.claim_id, result: null })),
    );
    // Wait until the settle is blocked on the first task's lock.
    for (let waited = 0; ; waited += 10) {
      const activity = await prober.query<{ wait_event_type: string | null }>('SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1', [settlerPid]);
      if (activity.rows[0]?.wait_event_type === 'Lock') break;
      if (waited > 10_000) throw new Error('the settle never waited for the held lock');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // Locking in id order, it holds no task past the held one: each can be locked (as a cancel would).
    await prober.query('BEGIN');
    const later = await prober.query(
      `SELECT task_id FROM coremachine.tasks WHERE task_id = ANY($1::text[]) AND task_id > $2 ORDER BY task_id FOR UPDATE NOWAIT`,
      [settling, first],
    );
    // Counted by the server's own text order (the test's JavaScript comparison could differ from a collation).
    const expected = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM unnest($1::text[]) AS u(id) WHERE id > $2', [settling, first]);
    expect(later.rowCount).toBe(expected.rows[0]!.n);
    await prober.query('ROLLBACK');
    await holder.query('ROLLBACK');
    expect((await settled).tasks).toHaveLength(n / 2);
    await settler.query('COMMIT');
  } finally {
    await prober.query('ROLLBACK');
    await holder.query('ROLLBACK');
    await settler.query('ROLLBACK');
    prober.release();
    holder.release();
    settler.release();
  }
  await h.machine.cancelJob(jobId);
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
