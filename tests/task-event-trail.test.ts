import { startHarness, useTestDatabase, waitForJob } from './support/harness';

/**
 * infra/migrations/010_quiet_task_events.sql: a first attempt that succeeds writes no event (its
 * row has the times), everything that explains a failed, retried or cancelled task still does,
 * and the janitor reads progress from the task rows, so a busy stage is never taken for stalled.
 */

const db = useTestDatabase({ poolMax: 4 });

async function taskTrail(jobId: string): Promise<string[]> {
  const result = await db.pool.query<{ task_index: number; from_status: string | null; to_status: string; attempt: number; has_error: boolean }>(
    `SELECT t.task_index, e.from_status, e.to_status, e.attempt, e.error IS NOT NULL AS has_error
       FROM coremachine.events e JOIN coremachine.tasks t USING (task_id)
      WHERE e.job_id = $1 AND e.entity = 'task' ORDER BY e.id`,
    [jobId],
  );
  return result.rows.map((r) => `#${r.task_index} ${r.from_status ?? '∅'}→${r.to_status}@${r.attempt}${r.has_error ? ' error' : ''}`);
}

test('tasks that succeed at their first attempt write no events; the job and stage trail is whole', async () => {
  const h = await startHarness(db.pool);
  const { job } = await h.machine.submitJob('test.three_stages', { n: 20, tag: 'quiet' });
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('COMPLETED');
  expect(await taskTrail(job.jobId)).toEqual([]);
  const tasks = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM coremachine.tasks WHERE job_id = $1 AND status = 'COMPLETED' AND attempt = 1 AND started_at IS NOT NULL AND finished_at >= started_at`,
    [job.jobId],
  );
  expect(tasks.rows[0]?.n).toBe(60);
  const stageEvents = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM coremachine.events WHERE job_id = $1 AND entity = 'stage'`, [
    job.jobId,
  ]);
  expect(stageEvents.rows[0]?.n).toBe(6);
  await h.stop();
});

test('a failed task, a retried task and a cancelled task are each explained by the trail', async () => {
  const h = await startHarness(db.pool);
  const failed = await h.machine.submitJob('test.failing_job', { n: 3, failAt: 1 });
  expect((await waitForJob(h.machine, failed.job.jobId)).status).toBe('FAILED');
  const failedTrail = await taskTrail(failed.job.jobId);
  expect(failedTrail).toContain('#1 PROCESSING→FAILED@1 error');

  const retried = await h.machine.submitJob('test.flaky_job', { n: 2, failTimes: 1, failOnly: 0 });
  expect((await waitForJob(h.machine, retried.job.jobId)).status).toBe('COMPLETED');
  expect(await taskTrail(retried.job.jobId)).toEqual(['#0 PROCESSING→QUEUED@1 error', '#0 QUEUED→PROCESSING@2', '#0 PROCESSING→COMPLETED@2']);
  await h.stop();

  const paused = await startHarness(db.pool, { worker: false });
  const { job } = await paused.machine.submitJob('test.three_stages', { n: 3, tag: 'cancelled' });
  await paused.machine.processJobMessage(paused.transport.jobs.receive(1)[0]?.body);
  await paused.machine.cancelJob(job.jobId);
  expect(await taskTrail(job.jobId)).toEqual(['#0 QUEUED→CANCELLED@0', '#1 QUEUED→CANCELLED@0', '#2 QUEUED→CANCELLED@0'].sort((a, b) => a.localeCompare(b)));
  await paused.stop();
});

test('a stage whose tasks keep finishing without events is not taken for stalled by the janitor', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 4, tag: 'busy' });
  await h.machine.processJobMessage(h.transport.jobs.receive(1)[0]?.body);
  const messages = h.transport.tasks.receive(4);
  // Aged by moving the clock of the rows back, not by sleeping: on a loaded machine the sweep's
  // earlier steps alone could outlast a short window and make a busy stage look idle.
  const age = (seconds: number) =>
    db.pool.query(
      `WITH e AS (UPDATE coremachine.events SET at = at - make_interval(secs => $2) WHERE job_id = $1)
       UPDATE coremachine.tasks SET started_at = started_at - make_interval(secs => $2), finished_at = finished_at - make_interval(secs => $2) WHERE job_id = $1`,
      [job.jobId, seconds],
    );
  // The last event (stage started) ages past the window; a task then finishes, writing no event.
  await age(10);
  await h.machine.processTaskMessages([messages[0]?.body]);
  const report = await h.machine.sweep({ stallAfterMs: 5_000 });
  expect(report.stalled.find((s) => s.jobId === job.jobId)).toBeUndefined();
  // With no progress for longer than the window it is examined (its messages are still queued here).
  await age(10);
  const later = await h.machine.sweep({ stallAfterMs: 5_000 });
  expect(later.stalled.find((s) => s.jobId === job.jobId)?.idleSeconds).toBeGreaterThanOrEqual(0);
  await h.machine.processTaskMessages(messages.slice(1).map((m) => m.body));
  for (let stage = 2; stage <= 3; stage++) {
    await h.machine.processJobMessage(h.transport.jobs.receive(1)[0]?.body);
    await h.machine.processTaskMessages(h.transport.tasks.receive(4).map((m) => m.body));
  }
  expect((await h.machine.getJob(job.jobId)).status).toBe('COMPLETED');
  await h.stop();
});
