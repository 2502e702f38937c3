import type { JobQueueMessage } from '../models';
import type { Transport } from '../core/transport/transport';
import { captureLogger, startHarness, waitForJob, useTestDatabase } from './support/harness';
import { InProcessWorker } from '../core/worker';
import type { InProcessQueue, ReceivedMessage } from '../core/transport/in-process-queue';

/** Scheduled messages (retries) become visible later: wait for them. */
async function receiveWithin(queue: InProcessQueue, count: number, ms = 2000): Promise<ReceivedMessage[]> {
  const deadline = Date.now() + ms;
  const received: ReceivedMessage[] = [];
  while (received.length < count && Date.now() < deadline) {
    received.push(...queue.receive(count - received.length));
    if (received.length < count) await new Promise((r) => setTimeout(r, 5));
  }
  return received;
}

const db = useTestDatabase();

/** Crash tests backdate leases instead of waiting for them, as graphile-worker's tests do. */
async function expireLeases(jobId: string): Promise<number> {
  const result = await db.pool.query(
    "UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second' WHERE job_id = $1 AND status = 'PROCESSING'",
    [jobId],
  );
  return result.rowCount ?? 0;
}

test('a zombie worker whose lease expired and whose task was re-claimed cannot overwrite the result', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('test.flaky_job', { n: 1, failTimes: 0 });
  await h.machine.processJobMessage(h.transport.jobs.receive(1)[0]?.body);
  const [message] = h.transport.tasks.receive(1);

  // Worker A claims the task, then stalls (we hold its handler), its lease runs out.
  let releaseZombie!: () => void;
  const zombieHeld = new Promise<void>((resolve) => (releaseZombie = resolve));
  const zombieHarness = await startHarness(db.pool, { worker: false, beforeTask: () => zombieHeld });
  const zombie = zombieHarness.machine.processTaskMessages([message?.body]);
  while ((await expireLeases(job.jobId)) === 0) await new Promise((r) => setTimeout(r, 5));

  // The janitor re-queues it: a lost lease is not an attempt, so worker B runs attempt 1 again,
  // under a message id of its own (Service Bus duplicate detection would drop the original's).
  const report = await h.machine.sweep();
  expect(report).toMatchObject({ requeuedTasks: 1, failedTasks: 0 });
  const [retryMessage] = await receiveWithin(h.transport.tasks, 1);
  expect(retryMessage?.body).toMatchObject({ attempt: 1, resend: 'lost1' });
  expect(retryMessage?.messageId).not.toBe(message?.messageId);
  expect((await h.machine.listTasks(job.jobId))[0]).toMatchObject({
    status: 'QUEUED',
    attempt: 0,
    leaseLosses: 1,
    error: { type: 'HostLostError', leaseLosses: 1 },
  });
  expect(await h.machine.processTaskMessages([retryMessage?.body])).toEqual([{ kind: 'completed', taskId: `${job.jobId}-s1-t0` }]);

  // Worker A wakes up: its result is rejected by the claim fence.
  releaseZombie();
  expect(await zombie).toEqual([expect.objectContaining({ kind: 'fenced' })]);
  const done = await h.machine.getJob(job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ attempts: [1] });
  expect(done.stages[0]).toMatchObject({ completed: 1, failed: 0 });
  expect((await h.machine.listTasks(job.jobId))[0]).toMatchObject({ status: 'COMPLETED', attempt: 1, leaseLosses: 1, error: null });
  await zombieHarness.stop();
  await h.stop();
});

test('a host that dies inside a handler, again and again: each lost lease re-queues the task without using its one attempt; the third fails it with LeaseExpired', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 2, tag: 'crash-in-handler' });
  await h.machine.processJobMessage(h.transport.jobs.receive(1)[0]?.body);
  const hosts = [];
  for (let loss = 1; loss <= 3; loss++) {
    // A host takes the messages and dies in the handlers (they never return); its leases run out.
    const crashed = await startHarness(db.pool, { worker: false, beforeTask: () => new Promise(() => undefined) });
    hosts.push(crashed);
    void crashed.machine.processTaskMessages((await receiveWithin(h.transport.tasks, 2)).map((m) => m.body));
    while ((await expireLeases(job.jobId)) < 2) await new Promise((r) => setTimeout(r, 5));
    const report = await h.machine.sweep();
    if (loss < 3) {
      expect(report).toMatchObject({ requeuedTasks: 2, failedTasks: 0 });
      expect((await h.machine.getJob(job.jobId)).status).toBe('PROCESSING');
      expect((await h.machine.listTasks(job.jobId)).map((t) => [t.status, t.attempt, t.leaseLosses])).toEqual([
        ['QUEUED', 0, loss],
        ['QUEUED', 0, loss],
      ]);
    } else expect(report).toMatchObject({ requeuedTasks: 0, failedTasks: 2 });
  }
  const failed = await h.machine.getJob(job.jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({ type: 'LeaseExpiredError', stage: 1, leaseLosses: 3 });
  expect(failed.error?.message).toMatch(/expired 3 time\(s\)/);
  const runs = await db.pool.query('SELECT failed_tasks FROM coremachine.janitor_runs ORDER BY id DESC LIMIT 1');
  expect(runs.rows).toEqual([{ failed_tasks: 2 }]);
  // The trail says what happened each time.
  const trail = (await h.machine.listEvents(job.jobId, { limit: 100 })).filter((e) => e.entity === 'task' && e.to === 'QUEUED');
  expect(trail.map((e) => e.error?.type)).toEqual(['HostLostError', 'HostLostError', 'HostLostError', 'HostLostError']);
  for (const host of hosts) await host.stop();
  await h.stop();
});

test('the bound on lost leases is a setting: with maxLeaseLosses 1 the first loss fails the task', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 1, tag: 'one-loss' });
  await h.machine.processJobMessage(h.transport.jobs.receive(1)[0]?.body);
  const crashed = await startHarness(db.pool, { worker: false, beforeTask: () => new Promise(() => undefined) });
  void crashed.machine.processTaskMessages(h.transport.tasks.receive(1).map((m) => m.body));
  while ((await expireLeases(job.jobId)) < 1) await new Promise((r) => setTimeout(r, 5));
  expect(await h.machine.sweep({ maxLeaseLosses: 1 })).toMatchObject({ requeuedTasks: 0, failedTasks: 1 });
  expect((await h.machine.getJob(job.jobId)).error).toMatchObject({ type: 'LeaseExpiredError', leaseLosses: 1 });
  await crashed.stop();
  await h.stop();
});

test('a lost job message: the janitor finds the stalled job, says why, re-sends, and the job completes', async () => {
  let dropStage2 = true;
  const h = await startHarness(db.pool, {
    wrapTransport: (inner): Transport => ({
      name: 'lossy',
      durable: false,
      sendReceipt: (queue, receipt, properties) => inner.sendReceipt(queue, receipt, properties),
      publishEvents: (events) => inner.publishEvents(events),
      close: () => inner.close(),
      sendTaskMessages: (m) => inner.sendTaskMessages(m),
      scheduleTaskMessages: (m, at) => inner.scheduleTaskMessages(m, at),
      sendJobMessages: async (messages: readonly JobQueueMessage[]) => {
        const kept = messages.filter((m) => !(dropStage2 && m.stage === 2 && !m.resend));
        if (kept.length < messages.length) dropStage2 = false;
        await inner.sendJobMessages(kept);
      },
    }),
  });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 3, tag: 'lost' });
  await h.worker?.drain();
  expect((await h.machine.getJob(job.jobId)).status).toBe('QUEUED');
  const report = await h.machine.sweep({ stallAfterMs: 0 });
  expect(report.stalled).toEqual([
    expect.objectContaining({
      jobId: job.jobId,
      status: 'QUEUED',
      stage: 2,
      action: 'resent-job-message',
      reason: 'QUEUED at stage 2 with no job message pending',
    }),
  ]);
  expect((await waitForJob(h.machine, job.jobId)).status).toBe('COMPLETED');
  await h.worker?.drain();
  await h.stop();
});

test('a dead-lettered task message marks the task and its job FAILED with the reason', async () => {
  const h = await startHarness(db.pool, { queue: { maxDeliveryCount: 2 }, worker: false });
  const { job } = await h.machine.submitJob('test.three_stages', { n: 3, tag: 'dead-letter' });
  await h.machine.processJobMessage(h.transport.jobs.receive(1)[0]?.body);
  const [poison] = h.transport.tasks.receive(1);
  // Every delivery "crashes" before the task is claimed: abandoned twice → dead-lettered.
  h.transport.tasks.abandon(poison!);
  h.transport.tasks.abandon(h.transport.tasks.receive(1).find((m) => m.messageId === poison?.messageId) ?? poison!);
  expect(h.transport.tasks.deadLetters).toHaveLength(1);
  const worker = new InProcessWorker(h.machine, h.transport, captureLogger(h.logs), { taskBatchSize: 4, taskConcurrency: 1, jobConcurrency: 1 });
  await worker.drain();
  const failed = await h.machine.getJob(job.jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({ type: 'DeadLetteredError', taskId: (poison?.body as { taskId: string }).taskId });
  expect(failed.error?.message).toContain('MaxDeliveryCountExceeded');
  const recorded = await db.pool.query('SELECT reason, task_id FROM coremachine.dead_letters WHERE job_id = $1', [job.jobId]);
  expect(recorded.rows).toEqual([{ reason: 'MaxDeliveryCountExceeded', task_id: (poison?.body as { taskId: string }).taskId }]);
  await worker.stop();
  await h.stop();
});

test('concurrent janitor sweeps do not double-handle an expired lease', async () => {
  const h = await startHarness(db.pool, { worker: false });
  const { job } = await h.machine.submitJob('test.flaky_job', { n: 5, failTimes: 0, failOnly: 99 });
  await h.machine.processJobMessage(h.transport.jobs.receive(1)[0]?.body);
  const stuck = await startHarness(db.pool, { worker: false, beforeTask: () => new Promise(() => undefined) });
  void stuck.machine.processTaskMessages(h.transport.tasks.receive(5).map((m) => m.body));
  while ((await expireLeases(job.jobId)) < 5) await new Promise((r) => setTimeout(r, 5));
  const reports = await Promise.all(Array.from({ length: 4 }, () => h.machine.sweep()));
  expect(reports.reduce((sum, r) => sum + r.requeuedTasks, 0)).toBe(5);
  const retries = await receiveWithin(h.transport.tasks, 5);
  expect(retries.map((m) => (m.body as { attempt: number }).attempt)).toEqual([1, 1, 1, 1, 1]);
  await h.machine.processTaskMessages(retries.map((m) => m.body));
  const done = await h.machine.getJob(job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ attempts: [1, 1, 1, 1, 1] });
  await stuck.stop();
  await h.stop();
});
