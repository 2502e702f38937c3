import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { defineJob, defineTask, type TaskContext } from '../models';
import { appRegistry } from './support/registry';
import { captureLogger, useTestDatabase } from './support/harness';

// A handler may destructure its context (`{ heartbeat, signal }`), as most Node code does with an
// options object: the heartbeat must still extend its own task's lease, and find a lost lease.
const db = useTestDatabase();

const LEASE_SECONDS = 3600;
const seen: Array<{ context: Omit<TaskContext, 'signal' | 'heartbeat' | 'log'>; extendedBy: number; abortedWith: string | undefined }> = [];

async function leaseLeftSeconds(taskId: string): Promise<number> {
  const { rows } = await db.pool.query<{ left: number }>(
    'SELECT extract(epoch FROM lease_expires_at - now())::float8 AS left FROM coremachine.tasks WHERE task_id = $1',
    [taskId],
  );
  return rows[0]?.left ?? Number.NaN;
}

const heartbeating = defineTask({
  type: 'context.heartbeating',
  parameters: z.object({ i: z.number().int() }),
  leaseSeconds: LEASE_SECONDS,
  handler: async (_parameters, { heartbeat, signal, jobId, taskId, stage, taskIndex, attempt }) => {
    // The lease is nearly out; a heartbeat gives it the task type's full length again.
    await db.pool.query("UPDATE coremachine.tasks SET lease_expires_at = now() + interval '5 seconds' WHERE task_id = $1", [taskId]);
    await heartbeat();
    const extendedBy = (await leaseLeftSeconds(taskId)) - 5;
    // Another worker re-claimed the task: the next heartbeat finds the lease lost and aborts.
    await db.pool.query('UPDATE coremachine.tasks SET claim_id = gen_random_uuid() WHERE task_id = $1', [taskId]);
    await heartbeat();
    seen.push({
      context: { jobId, taskId, stage, taskIndex, attempt },
      extendedBy,
      abortedWith: signal.aborted ? String((signal.reason as Error).message) : undefined,
    });
    return { done: true };
  },
});
const job = defineJob({ type: 'context.job', parameters: z.object({}) })
  .stage({ name: 'only', task: heartbeating, fanOut: () => [{ i: 0 }] })
  .finalize(() => Promise.resolve({ ok: true }));

test('a destructured heartbeat extends its own task lease, and a lost lease aborts the destructured signal', async () => {
  const transport = new InProcessTransport();
  const machine = await CoreMachine.create({ pool: db.pool, registry: appRegistry(job), transport, logger: captureLogger([]) });
  const { job: submitted } = await machine.submitJob('context.job', {});
  await machine.processJobMessage(transport.jobs.receive(1)[0]?.body);
  const taskId = `${submitted.jobId}-s1-t0`;

  // The result of a run whose lease was lost is fenced: the re-claimer's result is the one that counts.
  expect(await machine.processTaskMessages(transport.tasks.receive(1).map((m) => m.body))).toEqual([expect.objectContaining({ kind: 'fenced', taskId })]);
  expect(seen).toHaveLength(1);
  expect(seen[0]?.context).toEqual({ jobId: submitted.jobId, taskId, stage: 1, taskIndex: 0, attempt: 1 });
  expect(seen[0]?.extendedBy).toBeGreaterThan(LEASE_SECONDS - 5 - 60);
  expect(seen[0]?.abortedWith).toBe(`lease on task ${taskId} was lost`);

  // The make-believe re-claimer never reports: its lease runs out and, allowed no lost lease beyond
  // that one, the janitor ends the job.
  await db.pool.query("UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = $1", [taskId]);
  expect(await machine.sweep({ maxLeaseLosses: 1 })).toMatchObject({ failedTasks: 1 });
  expect(await machine.getJob(submitted.jobId)).toMatchObject({ status: 'FAILED', error: { type: 'LeaseExpiredError' } });
  await transport.close();
});
