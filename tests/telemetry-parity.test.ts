import * as telemetry from '../core/telemetry';
import type { RemoteTask } from '../core/engine/remote-workers';
import { useHarnessPerTest, waitForJob, type Harness } from './support/harness';

/**
 * Transition telemetry does not depend on who finished the work: a stage finished by a remote
 * worker or by the janitor reports the same JobTransition / StageCompleted events and the same
 * stage-duration metric as one finished by an in-process handler (issue 11, item 1).
 */
const ctx = useHarnessPerTest();
let h: Harness;
const emitted: Array<{ name: string; attributes: Record<string, unknown> }> = [];
const durations: Array<{ ms: number; attributes: Record<string, unknown> }> = [];

beforeEach(() => {
  h = ctx.h();
  emitted.length = 0;
  durations.length = 0;
  jest.spyOn(telemetry, 'emitEvent').mockImplementation((name, attributes) => {
    emitted.push({ name, attributes: { ...attributes } });
  });
  jest.spyOn(telemetry, 'recordStageDuration').mockImplementation((ms, attributes) => {
    durations.push({ ms, attributes: { ...attributes } });
  });
});
afterEach(() => {
  jest.restoreAllMocks();
});

/** The job's transition events in order, as `name from→to @stage`, plus the stage-completion details. */
function trail(jobId: string): string[] {
  return emitted
    .filter((event) => event.attributes.jobId === jobId)
    .map(({ name, attributes: a }) =>
      name === 'CoreMachine.StageCompleted'
        ? `${name} @${String(a.stage)} ${String(a.stageName)} total=${String(a.total)} failed=${String(a.failed)}`
        : name === 'CoreMachine.StageStarted'
          ? `${name} @${String(a.stage)} tasks=${String(a.tasks)}`
          : `${name} ${String(a.from)}→${String(a.to)} @${String(a.stage)}${a.errorType ? ' error' : ''}`,
    );
}

function stageDurations(jobType: string): Array<{ stage: unknown; ms: number }> {
  return durations.filter((d) => d.attributes.jobType === jobType).map((d) => ({ stage: d.attributes.stage, ms: d.ms }));
}

async function claimRender(expected: number): Promise<RemoteTask[]> {
  const claimed: RemoteTask[] = [];
  for (let i = 0; i < 500 && claimed.length < expected; i++) {
    claimed.push(...(await h.machine.remote.claim({ workerId: 'gpu-1', taskTypes: ['test.render'], maxTasks: 10 })));
    if (claimed.length < expected) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(claimed).toHaveLength(expected);
  return claimed;
}

test('a stage finished in process and one finished by a remote worker report the same transitions and stage durations', async () => {
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 2 });
  // Stage 1 ("plan") runs in process; stage 2 ("render") is finished by remote workers.
  for (const task of await claimRender(2)) {
    await h.machine.remote.complete(task.taskId, { claimId: task.claimId, result: { frame: (task.parameters as { frame: number }).frame, bytes: 10 } });
  }
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('COMPLETED');

  expect(trail(job.jobId)).toEqual([
    'CoreMachine.JobTransition none→QUEUED @1',
    'CoreMachine.StageStarted @1 tasks=2',
    'CoreMachine.StageCompleted @1 plan total=2 failed=0', // in process
    'CoreMachine.JobTransition PROCESSING→QUEUED @2',
    'CoreMachine.StageStarted @2 tasks=2',
    'CoreMachine.StageCompleted @2 render total=2 failed=0', // remote worker
    'CoreMachine.JobTransition PROCESSING→COMPLETED @2',
  ]);
  const recorded = stageDurations('test.remote_job');
  expect(recorded.map((d) => d.stage)).toEqual([1, 2]);
  for (const d of recorded) expect(d.ms).toBeGreaterThanOrEqual(0);
});

test('a job failed by the janitor (lost lease, no attempt left) reports the same transition as one failed in process', async () => {
  const inProcess = await h.machine.submitJob('test.failing_job', { n: 3, failAt: 1 });
  expect((await waitForJob(h.machine, inProcess.job.jobId)).status).toBe('FAILED');

  const { job } = await h.machine.submitJob('test.remote_job', { frames: 1 });
  // Attempt 1 fails and is retried (maxAttempts 2); attempt 2's worker vanishes and its lease expires.
  const [first] = await claimRender(1);
  await h.machine.remote.fail(first!.taskId, { claimId: first!.claimId, error: { message: 'GPU out of memory' } });
  const [second] = await claimRender(1);
  expect(second?.attempt).toBe(2);
  await ctx.db().pool.query("UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = $1", [second!.taskId]);
  // No lost lease allowed beyond this one: the janitor fails the task.
  expect(await h.machine.sweep({ maxLeaseLosses: 1 })).toMatchObject({ failedTasks: 1 });
  expect((await h.machine.getJob(job.jobId)).status).toBe('FAILED');

  expect(trail(inProcess.job.jobId).slice(-1)).toEqual(['CoreMachine.JobTransition PROCESSING→FAILED @1 error']);
  expect(trail(job.jobId).slice(-2)).toEqual(['CoreMachine.StageStarted @2 tasks=1', 'CoreMachine.JobTransition PROCESSING→FAILED @2 error']);
});

test('a stage the janitor advances (finished, but the job never moved on) reports the same completion as one finished in process', async () => {
  // Its own key: the file's database already holds the frames=1 job of the test above.
  const { job } = await h.machine.submitJob('test.remote_job', { frames: 1 }, { idempotencyKey: 'lost-advance' });
  const [task] = await claimRender(1);
  // The lost advance: the task and its stage's counter are done, the job still PROCESSING at stage 2.
  const pool = ctx.db().pool;
  await pool.query(
    `UPDATE coremachine.tasks SET status = 'COMPLETED', result = '{"frame":0,"bytes":7}', finished_at = now(), claim_id = NULL, lease_expires_at = NULL WHERE task_id = $1`,
    [task!.taskId],
  );
  await pool.query('UPDATE coremachine.stages SET completed = completed + 1 WHERE job_id = $1 AND stage = 2', [job.jobId]);
  const report = await h.machine.sweep({ stallAfterMs: 0 });
  expect(report.stalled.find((s) => s.jobId === job.jobId)?.action).toBe('advanced');
  expect((await h.machine.getJob(job.jobId)).status).toBe('COMPLETED');

  expect(trail(job.jobId).slice(-2)).toEqual(['CoreMachine.StageCompleted @2 render total=1 failed=0', 'CoreMachine.JobTransition PROCESSING→COMPLETED @2']);
  expect(stageDurations('test.remote_job').map((d) => d.stage)).toEqual([1, 2]);
});
