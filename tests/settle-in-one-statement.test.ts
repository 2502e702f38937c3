import { withTransaction } from '../core/db/pool';
import { recordsInOneStatement } from '../core/engine/task-outcomes';
import { SingleStatementError } from '../core/errors';
import { settleTasks, type TaskOutcome } from '../core/state/tasks-store';
import { startHarness, useTestDatabase, type Harness } from './support/harness';

/**
 * The settle of a batch of results is one statement: the task rows, their slots and their stages'
 * counts together (core/state/tasks-store.ts). With no retry and no log lines among the results,
 * the task runner runs that statement as its own transaction, without BEGIN and COMMIT.
 */

// The jobs here are settled by hand, never run to their end: nothing is left PROCESSING by an engine path.
const db = useTestDatabase({ checkAfterEach: false });

/** A job's first stage created and all its tasks claimed, as a worker would have claimed them. */
async function claimedStage(h: Harness, tag: string, n: number): Promise<{ jobId: string; claims: Array<{ taskId: string; claimId: string }> }> {
  const { job } = await h.machine.submitJob('test.three_stages', { n, tag });
  const [jobMessage] = h.transport.jobs.receive(1);
  await h.machine.processJobMessage(jobMessage?.body);
  const claimed = await db.pool.query<{ task_id: string; claim_id: string }>(
    `UPDATE coremachine.tasks SET status = 'PROCESSING', attempt = 1, claim_id = gen_random_uuid(), started_at = now()
      WHERE job_id = $1 AND stage = 1 RETURNING task_id, claim_id`,
    [job.jobId],
  );
  expect(claimed.rowCount).toBe(n);
  return { jobId: job.jobId, claims: claimed.rows.map((row) => ({ taskId: row.task_id, claimId: row.claim_id })) };
}

test("one settle of two jobs' results counts each stage once, as its statement sees them; retries and fenced results are not counted", async () => {
  const h = await startHarness(db.pool, { worker: false });
  try {
    const a = await claimedStage(h, 'settle-a', 5);
    const b = await claimedStage(h, 'settle-b', 4);
    const [a0, a1, a2, a3] = a.claims as [(typeof a.claims)[number], (typeof a.claims)[number], (typeof a.claims)[number], (typeof a.claims)[number]];
    const [b0, b1] = b.claims as [(typeof b.claims)[number], (typeof b.claims)[number]];
    const outcomes: TaskOutcome[] = [
      { ...a0, jobId: a.jobId, result: 1 },
      { ...a1, jobId: a.jobId, error: { type: 'TaskHandlerError', message: 'a1 failed' } },
      { ...a2, jobId: a.jobId, error: { type: 'TaskHandlerError', message: 'a2 retries' }, retryAt: new Date(Date.now() + 60_000) },
      // A claim that is no longer current: fenced off, changes nothing.
      { taskId: a3.taskId, claimId: '00000000-0000-4000-8000-000000000000', jobId: a.jobId, result: 3 },
      { ...b0, jobId: b.jobId, result: 'b0' },
      { ...b1, jobId: b.jobId, result: 'b1' },
    ];

    const settled = await settleTasks(db.pool, outcomes);

    expect(settled.tasks.map((task) => [task.task_id, task.status]).sort()).toEqual(
      [
        [a0.taskId, 'COMPLETED'],
        [a1.taskId, 'FAILED'],
        [a2.taskId, 'QUEUED'],
        [b0.taskId, 'COMPLETED'],
        [b1.taskId, 'COMPLETED'],
      ].sort(),
    );
    const byJob = Object.fromEntries(settled.stages.map((stage) => [stage.job_id, stage]));
    expect(settled.stages).toHaveLength(2);
    expect(byJob[a.jobId]).toMatchObject({ stage: 1, status: 'PROCESSING', total: 5, completed: 1, failed: 1, max_failures: 0, creating: false });
    expect(byJob[b.jobId]).toMatchObject({ stage: 1, status: 'PROCESSING', total: 4, completed: 2, failed: 0, creating: false });

    // A second settle from another backend adds its own shard and sees the first one's committed counts.
    // (Pools from newPool are ended with the test database.)
    const again = await settleTasks(db.newPool(1), [{ ...(b.claims[2] as (typeof b.claims)[number]), jobId: b.jobId, result: 'b2' }]);
    expect(again.stages).toEqual([expect.objectContaining({ job_id: b.jobId, completed: 3, failed: 0 })]);
    const stored = await db.pool.query<{ job_id: string; completed: number; failed: number }>(
      `SELECT job_id, sum(completed)::int AS completed, sum(failed)::int AS failed FROM coremachine.stage_counts WHERE job_id = ANY($1) GROUP BY job_id`,
      [[a.jobId, b.jobId]],
    );
    expect(Object.fromEntries(stored.rows.map((row) => [row.job_id, [row.completed, row.failed]]))).toEqual({ [a.jobId]: [1, 1], [b.jobId]: [3, 0] });

    // Only fenced results: nothing settled, nothing counted.
    expect(await settleTasks(db.pool, [{ ...a0, jobId: a.jobId, result: 'late' }])).toEqual({ tasks: [], stages: [] });
  } finally {
    await h.stop();
  }
});

test('a single-statement unit of work runs as its own transaction, and a second statement is refused before it is sent', async () => {
  await db.pool.query('CREATE TABLE single_statement_rows (n int)');
  const isOwnTransaction = (options: { singleStatement?: boolean }, pool = db.pool) =>
    withTransaction(
      pool,
      // In a transaction opened by BEGIN, now() is BEGIN's time, earlier than this statement's start.
      async (client) => (await client.query<{ own: boolean }>('SELECT now() = statement_timestamp() AS own')).rows[0]?.own,
      options,
    );
  expect(await isOwnTransaction({ singleStatement: true })).toBe(true);
  expect(await isOwnTransaction({})).toBe(false);

  const twoStatements = withTransaction(
    db.pool,
    async (client) => {
      await client.query('INSERT INTO single_statement_rows VALUES (1)');
      await client.query('INSERT INTO single_statement_rows VALUES (2)');
    },
    { singleStatement: true, retry: false },
  );
  await expect(twoStatements).rejects.toBeInstanceOf(SingleStatementError);
  // The first statement committed on its own, which is why the declaration must be right; the second never ran.
  expect((await db.pool.query('SELECT n FROM single_statement_rows')).rows).toEqual([{ n: 1 }]);

  // A failing statement leaves nothing behind, and its connection serves the next work.
  const single = db.newPool(1);
  await expect(
    withTransaction(single, (client) => client.query('INSERT INTO single_statement_rows VALUES (1 / 0)'), { singleStatement: true }),
  ).rejects.toThrow(/division by zero/);
  expect(await isOwnTransaction({ singleStatement: true }, single)).toBe(true);
  expect((await single.query('SELECT count(*)::int AS n FROM single_statement_rows')).rows).toEqual([{ n: 1 }]);
});

test('results are recorded in one statement only when none retries and none logged: those write outbox and log rows too', () => {
  const plain: TaskOutcome = { taskId: 't', jobId: 'j', claimId: 'c', result: 1 };
  expect(recordsInOneStatement([plain, { ...plain, error: { type: 'TaskHandlerError', message: 'failed for good' } }])).toBe(true);
  expect(recordsInOneStatement([plain, { ...plain, error: { type: 'TaskHandlerError', message: 'again' }, retryAt: new Date() }])).toBe(false);
  expect(recordsInOneStatement([plain, { ...plain, logs: { lines: [], dropped: 0 } }])).toBe(false);
});
