/**
 * A host lost is not a handler that failed: it costs time, never a job. The engine keeps the
 * leases of the handlers it runs, a restarted process rebuilds what lived only in the dead one's
 * memory, and a host told to stop gives back what it cannot finish.
 */
import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { InProcessWorker } from '../core/worker';
import { defineJob, defineTask } from '../models';
import { appRegistry } from './support/registry';
import { captureLogger, useTestDatabase, waitForJob } from './support/harness';
import { insertOutboxRows } from '../core/state/outbox-store';

const db = useTestDatabase();

const SHORT_LEASE_SECONDS = 2;
/** How long `slow` handlers take, and whether they give up when their signal aborts. */
const behaviour = { runMs: 0, honourAbort: true };
const started: string[] = [];
/** What each aborted handler's task row said when the abort reached it. */
const statusAtAbort: Array<Promise<string | undefined>> = [];

const slow = defineTask({
  type: 'hostloss.slow',
  parameters: z.object({ i: z.number().int() }),
  leaseSeconds: SHORT_LEASE_SECONDS,
  handler: async ({ i }, { attempt, signal, taskId }) => {
    started.push(taskId);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, behaviour.runMs);
      signal.addEventListener(
        'abort',
        () => {
          statusAtAbort.push(
            db.pool.query<{ status: string }>('SELECT status FROM coremachine.tasks WHERE task_id = $1', [taskId]).then((r) => r.rows[0]?.status),
          );
          if (behaviour.honourAbort) {
            clearTimeout(timer);
            reject(signal.reason as Error);
          }
        },
        { once: true },
      );
    });
    return { i, attempt };
  },
});
const slowJob = defineJob({ type: 'hostloss.job', parameters: z.object({ n: z.number().int().min(1), tag: z.string() }) })
  .stage({ name: 'slow', task: slow, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ i })) })
  .finalize(async ({ previous }) => ({ attempts: (await previous.all()).map((r) => r.attempt) }));
const registry = appRegistry(slowJob);

async function engine(options: { worker?: boolean } = {}) {
  const transport = new InProcessTransport();
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const machine = await CoreMachine.create({ pool: db.pool, registry, transport, logger });
  const worker =
    options.worker === false ? undefined : new InProcessWorker(machine, transport, logger, { taskBatchSize: 8, taskConcurrency: 2, jobConcurrency: 1 });
  return { machine, transport, worker, logs, stop: async (graceMs?: number) => (await worker?.stop(graceMs), await transport.close()) };
}

const taskRows = async (jobId: string) =>
  (
    await db.pool.query<{ status: string; attempt: number; lease_losses: number }>(
      'SELECT status, attempt, lease_losses FROM coremachine.tasks WHERE job_id = $1 ORDER BY task_index',
      [jobId],
    )
  ).rows;

beforeEach(() => {
  started.length = 0;
  statusAtAbort.length = 0;
  Object.assign(behaviour, { runMs: 0, honourAbort: true });
});

test('a handler that runs far past its lease keeps it: the engine extends it, and janitor sweeps meanwhile find nothing to take', async () => {
  behaviour.runMs = 3 * SHORT_LEASE_SECONDS * 1000;
  const host = await engine();
  const janitor = await engine({ worker: false });
  const { job } = await host.machine.submitJob('hostloss.job', { n: 2, tag: 'long' });
  const sweeps: number[] = [];
  const sweeping = setInterval(() => void janitor.machine.sweep().then((report) => sweeps.push(report.requeuedTasks + report.failedTasks)), 400);
  try {
    expect(await waitForJob(host.machine, job.jobId, 20_000)).toMatchObject({ status: 'COMPLETED', result: { attempts: [1, 1] } });
  } finally {
    clearInterval(sweeping);
  }
  expect(sweeps.length).toBeGreaterThan(5);
  expect(sweeps.every((taken) => taken === 0)).toBe(true);
  expect(await taskRows(job.jobId)).toEqual([
    { status: 'COMPLETED', attempt: 1, lease_losses: 0 },
    { status: 'COMPLETED', attempt: 1, lease_losses: 0 },
  ]);
  await host.stop();
  await janitor.stop();
});

test('a restart rebuilds what lived only in the dead process: a job message, a stage of task messages, a signal accepted just before the crash', async () => {
  // The first process commits and "sends" into its own memory, then dies before any of it runs.
  const dead = await engine({ worker: false });
  const { job: queued } = await dead.machine.submitJob('hostloss.job', { n: 3, tag: 'queued' });
  const { job: midStage } = await dead.machine.submitJob('hostloss.job', { n: 3, tag: 'mid-stage' });
  const { job: gated } = await dead.machine.submitJob('approved_publish', { title: 'restart', pages: 2 });
  for (const message of dead.transport.jobs.receive(2)) {
    if ((message.body as { jobId: string }).jobId === midStage.jobId) await dead.machine.processJobMessage(message.body);
  }
  // approved_publish reaches its gate in the dead process, then the signal is accepted there.
  const atGate = async () => {
    const job = await dead.machine.getJob(gated.jobId);
    return job.stage === 2 && job.status === 'PROCESSING';
  };
  for (let round = 0; round < 20 && !(await atGate()); round++) {
    for (const message of dead.transport.jobs.receive(5)) await dead.machine.processJobMessage(message.body);
    const tasks = dead.transport.tasks.receive(100);
    if (tasks.length > 0) await dead.machine.processTaskMessages(tasks.filter((m) => (m.body as { jobId: string }).jobId === gated.jobId).map((m) => m.body));
  }
  await dead.machine.deliverSignal(gated.jobId, 'approval', { approvedBy: 'ana', approved: true });
  await dead.transport.close();

  const restarted = Date.now();
  const next = await engine();
  const resumed = await next.machine.resumeAfterStart();
  expect(resumed.resentJobs).toBeGreaterThanOrEqual(2);
  for (const jobId of [queued.jobId, midStage.jobId, gated.jobId]) expect((await waitForJob(next.machine, jobId, 10_000)).status).toBe('COMPLETED');
  // Seconds, not the janitor's five-minute stall window.
  expect(Date.now() - restarted).toBeLessThan(10_000);
  expect((await next.machine.getJob(gated.jobId)).result).toMatchObject({ published: 2, approvedBy: 'ana' });
  await next.worker?.drain();
  await next.stop();
});

test('a restart re-sends every stage the dead process held in memory, even when the outbox it left fills the new queue first', async () => {
  // The dead process created a stage of 300 tasks and handed all of it to its in-memory queue
  // (the dispatch rows deleted), and it had also committed one task message it never sent.
  const dead = await engine({ worker: false });
  const { job } = await dead.machine.submitJob('hostloss.job', { n: 300, tag: 'outbox-first' });
  await dead.machine.processJobMessage(dead.transport.jobs.receive(1)[0]?.body);
  expect(dead.transport.tasks.activeCount).toBeGreaterThan(0);
  const [first] = (await db.pool.query<{ task_id: string }>('SELECT task_id FROM coremachine.tasks WHERE job_id = $1 ORDER BY task_index LIMIT 1', [job.jobId]))
    .rows;
  await insertOutboxRows(db.pool, [
    {
      kind: 'task',
      jobId: job.jobId,
      payload: { taskId: first?.task_id, jobId: job.jobId, stage: 1, taskType: 'hostloss.slow', attempt: 1 },
      notBefore: new Date(),
    },
  ]);
  await dead.transport.close();

  // The new process starts: the outbox row goes out first and is queued when the stalled jobs are
  // examined. That queue is this process's own, so it must not stop the stage from being re-sent.
  const next = await engine({ worker: false });
  const resumed = await next.machine.resumeAfterStart();
  expect(resumed.outboxSent).toBe(1);
  expect(resumed.resentStages).toBe(1);
  const worker = new InProcessWorker(next.machine, next.transport, captureLogger(next.logs), { taskBatchSize: 32, taskConcurrency: 2, jobConcurrency: 1 });
  expect((await waitForJob(next.machine, job.jobId, 20_000)).status).toBe('COMPLETED');
  await worker.drain();
  await worker.stop();
  await next.stop();
});

test('shutdown: handlers within the grace period finish; one past it is aborted and its task given back, not failed, and another host runs it at once', async () => {
  behaviour.runMs = 300;
  const host = await engine();
  const { job } = await host.machine.submitJob('hostloss.job', { n: 2, tag: 'drain-in-time' });
  while (started.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  await host.stop(5_000);
  expect(await taskRows(job.jobId)).toEqual([
    { status: 'COMPLETED', attempt: 1, lease_losses: 0 },
    { status: 'COMPLETED', attempt: 1, lease_losses: 0 },
  ]);

  behaviour.runMs = 60_000;
  const stopping = await engine();
  const { job: long } = await stopping.machine.submitJob('hostloss.job', { n: 2, tag: 'drain-past-grace' });
  while (started.length < 4) await new Promise((resolve) => setTimeout(resolve, 10));
  const stoppedAt = Date.now();
  await stopping.stop(300);
  expect(Date.now() - stoppedAt).toBeLessThan(5_000);
  // Given back before the abort reached the handlers: a handler that fails at once on its abort
  // must not get its failure committed ahead of the give-back (it ended FAILED on a loaded machine).
  expect(await Promise.all(statusAtAbort)).toEqual(['QUEUED', 'QUEUED']);
  // Given back at the same attempt, with no loss counted: nothing has to wait for a lease.
  expect(await taskRows(long.jobId)).toEqual([
    { status: 'QUEUED', attempt: 0, lease_losses: 0 },
    { status: 'QUEUED', attempt: 0, lease_losses: 0 },
  ]);
  behaviour.runMs = 0;
  const other = await engine();
  await other.machine.resumeAfterStart();
  expect(await waitForJob(other.machine, long.jobId, 10_000)).toMatchObject({ status: 'COMPLETED', result: { attempts: [1, 1] } });
  await other.worker?.drain();
  await other.stop();
});

test("shutdown with a handler that ignores its abort: the stop still returns, and the handler's late result is fenced off", async () => {
  Object.assign(behaviour, { runMs: 1500, honourAbort: false });
  const host = await engine();
  const { job } = await host.machine.submitJob('hostloss.job', { n: 1, tag: 'deaf' });
  while (started.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  await host.stop(100);
  expect(await taskRows(job.jobId)).toEqual([{ status: 'QUEUED', attempt: 0, lease_losses: 0 }]);
  await new Promise((resolve) => setTimeout(resolve, 1600));
  // Its result arrived after the claim was given back: it changed nothing.
  expect(await taskRows(job.jobId)).toEqual([{ status: 'QUEUED', attempt: 0, lease_losses: 0 }]);
  behaviour.runMs = 0;
  const other = await engine();
  await other.machine.resumeAfterStart();
  expect((await waitForJob(other.machine, job.jobId, 10_000)).status).toBe('COMPLETED');
  await other.worker?.drain();
  await other.stop();
});
