/**
 * The batches one process handles at the same moment claim their tasks in one statement
 * (core/engine/shared-claims.ts). Sharing must not change what a batch gets: each task is claimed
 * once, by one batch, and a message that two batches carry runs its task once.
 */
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { Registry } from '../core/registry';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { defineJob, defineTask } from '../models';
import { captureLogger, useTestDatabase } from './support/harness';

const db = useTestDatabase();

/**
 * A job of `n` one-stage tasks whose stage is started by hand (no worker: the test delivers the
 * task messages itself), on a pool of its own; `runs` lists the tasks whose handler ran.
 */
async function startStage(name: string, n: number) {
  const runs: string[] = [];
  const taskType = `shared.${name}`;
  const work = defineTask({
    type: taskType,
    parameters: z.object({ i: z.number().int() }),
    handler: ({ i }, ctx) => {
      runs.push(ctx.taskId);
      return Promise.resolve(i);
    },
  });
  const jobType = `shared.${name}_job`;
  const job = defineJob({ type: jobType, parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const pool = db.newPool(4);
  const transport = new InProcessTransport();
  const machine = await CoreMachine.create({ pool, registry: new Registry().register(job), transport, logger: captureLogger([]) });
  const { job: submitted } = await machine.submitJob(jobType, { n });
  const jobId = submitted.jobId;
  expect(await machine.processJobMessage({ jobId, jobType, stage: 1 })).toMatchObject({ kind: 'started' });
  const tasks = await machine.listTasks(jobId, { stage: 1, afterIndex: -1, limit: n });
  const message = (i: number) => ({ taskId: tasks[i]!.taskId, jobId, stage: 1, taskType, attempt: 1 });
  return { runs, pool, transport, machine, jobId, tasks, message };
}

test('four batches in flight at once share one claim: every task runs once, and a message in all four batches runs its task once', async () => {
  const { runs, pool, transport, machine, jobId, tasks, message } = await startStage('claim', 8);
  try {
    const queries = jest.spyOn(pool, 'query');
    const claimStatements = () => queries.mock.calls.filter(([config]) => (config as { name?: string } | undefined)?.name === 'cm_claim_tasks').length;

    // Four batches delivered together, as a host's concurrent deliveries are; task 0 is in every one.
    const batches = [
      [message(0), message(1), message(2)],
      [message(0), message(3), message(4)],
      [message(0), message(5)],
      [message(0), message(6), message(7)],
    ];
    const outcomes = await Promise.all(batches.map((bodies) => machine.processTaskMessages(bodies)));

    expect(claimStatements()).toBe(1);
    expect(runs.sort()).toEqual(tasks.map((task) => task.taskId).sort());
    // Task 0 is claimed by the first batch that asked for it; the other three find it taken.
    expect(outcomes[0]!.map((outcome) => outcome.kind)).toEqual(['completed', 'completed', 'completed']);
    for (const later of outcomes.slice(1)) {
      expect(later[0]).toMatchObject({ kind: 'duplicate', taskId: tasks[0]!.taskId });
      expect(later.slice(1).every((outcome) => outcome.kind === 'completed')).toBe(true);
    }
    const status = await db.pool.query<{ status: string; n: number }>(
      'SELECT status, count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 GROUP BY status',
      [jobId],
    );
    expect(status.rows).toEqual([{ status: 'COMPLETED', n: 8 }]);
    // A batch after them claims on its own: sharing waits for nothing that is not already there.
    const ninth = await machine.processTaskMessages([message(3)]);
    expect(ninth).toMatchObject([{ kind: 'duplicate' }]);
    expect(claimStatements()).toBe(2);
    queries.mockRestore();
    // No worker here: the job's next message is handled by hand, and the job completes.
    const [jobMessage] = transport.jobs.receive(1);
    await machine.processJobMessage(jobMessage?.body);
    expect(await machine.getJob(jobId)).toMatchObject({ status: 'COMPLETED', result: 8 });
  } finally {
    // The pool is ended with the test database.
    await transport.close();
  }
});

test('a claim that fails for one batch (not a database fault) sends that batch back alone: its neighbours in the shared claim run', async () => {
  const { runs, pool, transport, machine, jobId, tasks, message } = await startStage('poison', 6);
  try {
    const poisoned = tasks[2]!.taskId;
    // The server refuses any claim that holds task 2 (as it would a value it cannot take).
    const faulty = pool as unknown as { query: (config: { name?: string; values?: unknown[] }) => Promise<unknown> };
    const query = faulty.query.bind(pool);
    let claims = 0;
    faulty.query = (config) => {
      if (config?.name === 'cm_claim_tasks') {
        claims++;
        if (String(config.values?.[0]).includes(poisoned)) return Promise.reject(Object.assign(new Error('value out of range'), { code: '22003' }));
      }
      return query(config);
    };

    const settled = await Promise.allSettled([
      machine.processTaskMessages([message(0), message(1)]),
      machine.processTaskMessages([message(2), message(3)]),
      machine.processTaskMessages([message(4), message(5)]),
    ]);
    faulty.query = query;

    // One shared claim failed; each batch then claimed alone, and only the poisoned one failed.
    expect(claims).toBe(4);
    expect(settled.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toMatchObject({ code: '22003' });
    expect(runs.sort()).toEqual([0, 1, 4, 5].map((i) => tasks[i]!.taskId).sort());
    const queued = await db.pool.query<{ task_id: string }>(`SELECT task_id FROM coremachine.tasks WHERE job_id = $1 AND status = 'QUEUED' ORDER BY task_id`, [
      jobId,
    ]);
    expect(queued.rows.map((row) => row.task_id)).toEqual([tasks[2]!.taskId, tasks[3]!.taskId].sort());
    expect((await machine.cancelJob(jobId)).status).toBe('CANCELLED');
  } finally {
    await transport.close();
  }
});

test('a task asked for at two attempts by two batches of one claim goes to the batch whose attempt was claimed, whichever asked first', async () => {
  const { runs, pool, transport, machine, jobId, tasks, message } = await startStage('attempts', 2);
  try {
    const queries = jest.spyOn(pool, 'query');
    // The first batch carries a message of an attempt the task is not at (a stale or future copy);
    // the second carries the current one, which claims it.
    const outcomes = await Promise.all([machine.processTaskMessages([{ ...message(0), attempt: 2 }, message(1)]), machine.processTaskMessages([message(0)])]);
    // One claim statement for both batches: the shared claim had to tell the two attempts apart.
    expect(queries.mock.calls.filter(([config]) => (config as { name?: string } | undefined)?.name === 'cm_claim_tasks')).toHaveLength(1);
    queries.mockRestore();
    expect(outcomes[1]).toEqual([{ kind: 'completed', taskId: tasks[0]!.taskId }]);
    expect(outcomes[0][0]).toMatchObject({ taskId: tasks[0]!.taskId });
    expect(outcomes[0][0]!.kind).not.toBe('completed');
    expect(outcomes[0][1]).toEqual({ kind: 'completed', taskId: tasks[1]!.taskId });
    expect(runs.sort()).toEqual(tasks.map((task) => task.taskId).sort());
    const [jobMessage] = transport.jobs.receive(1);
    await machine.processJobMessage(jobMessage?.body);
    expect(await machine.getJob(jobId)).toMatchObject({ status: 'COMPLETED', result: 2 });
  } finally {
    await transport.close();
  }
});
