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

test('four batches in flight at once share one claim: every task runs once, and a message in all four batches runs its task once', async () => {
  const runs: string[] = [];
  const work = defineTask({
    type: 'shared.claim',
    parameters: z.object({ i: z.number().int() }),
    handler: ({ i }, ctx) => {
      runs.push(ctx.taskId);
      return Promise.resolve(i);
    },
  });
  const job = defineJob({ type: 'shared.claim_job', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const pool = db.newPool(4);
  const transport = new InProcessTransport();
  const machine = await CoreMachine.create({ pool, registry: new Registry().register(job), transport, logger: captureLogger([]) });
  try {
    const { job: submitted } = await machine.submitJob('shared.claim_job', { n: 8 });
    expect(await machine.processJobMessage({ jobId: submitted.jobId, jobType: 'shared.claim_job', stage: 1 })).toMatchObject({ kind: 'started' });
    const tasks = await machine.listTasks(submitted.jobId, { stage: 1, afterIndex: -1, limit: 8 });
    const message = (i: number) => ({ taskId: tasks[i]!.taskId, jobId: submitted.jobId, stage: 1, taskType: 'shared.claim', attempt: 1 });
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
      [submitted.jobId],
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
    expect(await machine.getJob(submitted.jobId)).toMatchObject({ status: 'COMPLETED', result: 8 });
  } finally {
    // The pool is ended with the test database.
    await transport.close();
  }
});

test('a claim that fails for one batch (not a database fault) sends that batch back alone: its neighbours in the shared claim run', async () => {
  const runs: string[] = [];
  const work = defineTask({
    type: 'shared.poison',
    parameters: z.object({ i: z.number().int() }),
    handler: ({ i }, ctx) => {
      runs.push(ctx.taskId);
      return Promise.resolve(i);
    },
  });
  const job = defineJob({ type: 'shared.poison_job', parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'all', task: work, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
    .finalize(async ({ previous }) => (await previous.all()).length);
  const pool = db.newPool(4);
  const transport = new InProcessTransport();
  const machine = await CoreMachine.create({ pool, registry: new Registry().register(job), transport, logger: captureLogger([]) });
  try {
    const { job: submitted } = await machine.submitJob('shared.poison_job', { n: 6 });
    await machine.processJobMessage({ jobId: submitted.jobId, jobType: 'shared.poison_job', stage: 1 });
    const tasks = await machine.listTasks(submitted.jobId, { stage: 1, afterIndex: -1, limit: 6 });
    const message = (i: number) => ({ taskId: tasks[i]!.taskId, jobId: submitted.jobId, stage: 1, taskType: 'shared.poison', attempt: 1 });
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
      submitted.jobId,
    ]);
    expect(queued.rows.map((row) => row.task_id)).toEqual([tasks[2]!.taskId, tasks[3]!.taskId].sort());
    expect((await machine.cancelJob(submitted.jobId)).status).toBe('CANCELLED');
  } finally {
    await transport.close();
  }
});
