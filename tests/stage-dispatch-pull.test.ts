import { expectedThreeStageSum } from './support/test-jobs';
import { startHarness, useTestDatabase, waitForJob } from './support/harness';
import { countTaskDeliveries } from './support/task-messages';

// The in-process transport pulls a stage's task messages from the database as its queue drains
// (Service Bus holds them server-side): small pages here so a small job crosses many of them.
const db = useTestDatabase();
const feeder = { lowWaterMark: 10, pageSize: 10 };

test('a stage larger than a page runs to the exact result while the tasks queue holds at most a low-water mark plus a page', async () => {
  const h = await startHarness(db.pool, { queue: { feeder } });
  let maxVisible = 0;
  const stopWatching = h.transport.tasks.onActivity(() => {
    maxVisible = Math.max(maxVisible, h.transport.tasks.visibleCount);
  });
  const n = 150;
  const delivered = countTaskDeliveries(h.machine);
  const { job } = await h.machine.submitJob('test.three_stages', { n, tag: 'pull' });
  const done = await waitForJob(h.machine, job.jobId);
  stopWatching();
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: n, sum: expectedThreeStageSum(n) });
  expect(h.effects.total).toBe(3 * n);
  expect(h.effects.maxPerTask()).toBe(1);
  expect(maxVisible).toBeLessThanOrEqual(feeder.lowWaterMark + feeder.pageSize);
  expect(h.transport.tasks.feeder.stats.pagesRead).toBeGreaterThanOrEqual((3 * n) / feeder.pageSize - 3);
  // Each task was sent once (in packs: core/transport/task-packing.ts) and handed to the engine once.
  expect(h.transport.tasks.stats.duplicatesDropped).toBe(0);
  expect(delivered()).toBe(3 * n);
  await h.stop();
});

test('packed messages count their tasks toward the low-water mark: the queue reads ahead by tasks, not by packs', async () => {
  const packedFeeder = { lowWaterMark: 100, pageSize: 400 };
  const h = await startHarness(db.pool, { queue: { feeder: packedFeeder } });
  let maxVisibleTasks = 0;
  let maxTasksPerMessage = 0;
  const stopWatching = h.transport.tasks.onActivity(() => {
    const tasks = h.transport.tasks.visibleWeight;
    maxVisibleTasks = Math.max(maxVisibleTasks, tasks);
    if (h.transport.tasks.visibleCount > 0) maxTasksPerMessage = Math.max(maxTasksPerMessage, tasks / h.transport.tasks.visibleCount);
  });
  const n = 2000;
  const { job } = await h.machine.submitJob('test.three_stages', { n, tag: 'pull-packed' });
  const done = await waitForJob(h.machine, job.jobId);
  stopWatching();
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: n, sum: expectedThreeStageSum(n) });
  // Packs were queued (several tasks per message), yet the tasks held stay within a mark and a page;
  // counted by messages, the mark let up to 100 packs of 16 pile up.
  expect(maxTasksPerMessage).toBeGreaterThan(2);
  expect(maxVisibleTasks).toBeLessThanOrEqual(packedFeeder.lowWaterMark + packedFeeder.pageSize);
  await h.stop();
});

test('a crash loses the cursor with the queue: the janitor re-dispatches the stage from its QUEUED tasks, each task runs once', async () => {
  const crashed = await startHarness(db.pool, { worker: false, queue: { feeder } });
  const n = 45;
  const { job } = await crashed.machine.submitJob('test.three_stages', { n, tag: 'pull-crash' });
  await crashed.machine.processJobMessage(crashed.transport.jobs.receive(1)[0]?.body);
  // The first page is queued at hand-over; the rest is a cursor, not messages.
  expect(crashed.transport.tasks.visibleCount).toBe(feeder.pageSize);
  expect(crashed.transport.tasks.pendingSources).toBe(1);
  expect((await db.pool.query('SELECT count(*)::int AS n FROM coremachine.outbox')).rows[0]).toEqual({ n: 0 });
  const firstPage = crashed.transport.tasks.receive(feeder.pageSize);
  await crashed.machine.processTaskMessages(firstPage.map((m) => m.body));
  for (const message of firstPage) crashed.transport.tasks.complete(message);
  await crashed.stop(); // the process dies: its queue and its cursor are gone

  const restarted = await startHarness(db.pool, { queue: { feeder } });
  const report = await restarted.machine.sweep({ stallAfterMs: 0 });
  expect(report.stalled).toEqual([expect.objectContaining({ jobId: job.jobId, action: 'resent-task-messages' })]);
  const done = await waitForJob(restarted.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ count: n, sum: expectedThreeStageSum(n) });
  const runs = new Map(
    [...crashed.effects.runs, ...restarted.effects.runs].map(([id]) => [id, (crashed.effects.runs.get(id) ?? 0) + (restarted.effects.runs.get(id) ?? 0)]),
  );
  expect(runs.size).toBe(3 * n);
  expect(Math.max(...runs.values())).toBe(1);
  await restarted.stop();
});
