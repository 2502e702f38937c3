import { LeaseLostError, ValidationError } from '../core/errors';
import type { RemoteTask } from '../core/engine/remote-workers';
import type { TestDatabase } from './support/test-database';
import { useHarnessPerTest, waitForJob, type Harness } from './support/harness';

const ctx = useHarnessPerTest();
// Getters over the per-test values, so test bodies read as before.
let db: TestDatabase;
let h: Harness;
beforeEach(() => {
  db = ctx.db();
  h = ctx.h();
});

async function claimAll(workerId: string, expected: number): Promise<RemoteTask[]> {
  const claimed: RemoteTask[] = [];
  // By time, not tries: on a loaded machine the remote stage can take a while to be created.
  for (const deadline = Date.now() + 30_000; claimed.length < expected && Date.now() < deadline;) {
    claimed.push(...(await h.machine.remote.claim({ workerId, taskTypes: ['test.render'], maxTasks: 10 })));
    if (claimed.length < expected) await new Promise((r) => setTimeout(r, 10));
  }
  return claimed;
}

test('remote tasks are not queued but claimed over HTTP, reported, counted and fenced like queue tasks', async () => {
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 5 });
  const claimed = await claimAll('gpu-1', 5);
  expect(claimed.map((t) => t.taskIndex).sort()).toEqual([0, 1, 2, 3, 4]);
  expect(h.transport.tasks.stats.sent).toBe(5); // only stage 1's queue tasks
  expect(await h.machine.remote.claim({ workerId: 'gpu-2', taskTypes: ['test.render'], maxTasks: 10 })).toEqual([]);

  const [first, second, ...rest] = claimed;
  await expect(h.machine.remote.heartbeat(first!.taskId, { claimId: first!.claimId })).resolves.toHaveProperty('leaseExpiresAt');
  await expect(h.machine.remote.complete(first!.taskId, { claimId: first!.claimId, result: { frame: 0 } })).rejects.toBeInstanceOf(ValidationError);
  await h.machine.remote.complete(first!.taskId, { claimId: first!.claimId, result: { frame: 0, bytes: 100 } });
  // A second report of the same claim is fenced: the task is no longer PROCESSING under it.
  await expect(h.machine.remote.complete(first!.taskId, { claimId: first!.claimId, result: { frame: 0, bytes: 1 } })).rejects.toBeInstanceOf(LeaseLostError);

  // A transient failure goes back to QUEUED (retry policy: 2 attempts) and is claimed again.
  expect(await h.machine.remote.fail(second!.taskId, { claimId: second!.claimId, error: { message: 'GPU out of memory' } })).toMatchObject({
    retryAt: expect.any(Date) as Date,
  });
  const [again] = await claimAll('gpu-2', 1);
  expect(again).toMatchObject({ taskId: second!.taskId, attempt: 2 });
  await h.machine.remote.complete(again!.taskId, { claimId: again!.claimId, result: { frame: 1, bytes: 200 } });

  // An operator releases a stuck claim; the old claim can no longer report.
  const stuck = rest[0]!;
  await h.machine.remote.release(stuck.taskId);
  await expect(h.machine.remote.heartbeat(stuck.taskId, { claimId: stuck.claimId })).rejects.toBeInstanceOf(LeaseLostError);
  const [reclaimed] = await claimAll('gpu-3', 1);
  expect(reclaimed?.taskId).toBe(stuck.taskId);
  for (const task of [reclaimed!, ...rest.slice(1)])
    await h.machine.remote.complete(task.taskId, { claimId: task.claimId, result: { frame: task.taskIndex, bytes: 10 } });

  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ totalBytes: 330 });
  expect(done.stages[1]).toMatchObject({ total: 5, completed: 5, failed: 0 });
});

test('a remote worker that vanished: its lease expires, the janitor requeues it without using an attempt, and a non-retryable failure fails the job', async () => {
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 1 });
  const [task] = await claimAll('gpu-lost', 1);
  await db.pool.query("UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = $1", [task!.taskId]);
  const report = await h.machine.sweep();
  expect(report.requeuedTasks).toBe(1);
  const [retry] = await claimAll('gpu-new', 1);
  // The worker was lost, not the work: the same attempt runs again, the loss is counted.
  expect(retry?.attempt).toBe(1);
  expect((await h.machine.listTasks(job.jobId, { stage: 2 }))[0]).toMatchObject({ status: 'PROCESSING', leaseLosses: 1 });
  await expect(h.machine.remote.complete(task!.taskId, { claimId: task!.claimId, result: { frame: 0, bytes: 1 } })).rejects.toBeInstanceOf(LeaseLostError);
  await h.machine.remote.fail(retry!.taskId, { claimId: retry!.claimId, error: { type: 'CorruptInput', message: 'frame 0 is corrupt' }, retryable: false });
  const failed = await waitForJob(h.machine, job.jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({ type: 'CorruptInput', message: 'frame 0 is corrupt', stage: 2, taskId: task!.taskId });
});
