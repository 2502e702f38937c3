import { z } from 'zod';
import { CoreMachine } from '../core/engine/core-machine';
import { SignalRefusedError } from '../core/errors';
import type { Transport } from '../core/transport/transport';
import { setAppContext } from '../functions/app-context';
import { signalJobHandler } from '../functions/http-signals';
import { submissionHandler } from '../functions/servicebus-triggers';
import { approvedPublish } from '../jobs/approved-publish';
import { defineJob, isSignalStage, type JobView } from '../models';
import { captureLogger, useHarnessPerTest, waitForJob, type Harness } from './support/harness';
import { call, invocation, invocationLogs } from './support/http-invoke';

/**
 * Approval gates: a stage that waits for a named signal instead of running tasks (issue 13, part 3).
 * The shipped approved_publish job renders pages, waits for `approval`, then publishes.
 */
const { db, h, restart } = useHarnessPerTest();

const APPROVAL = { approvedBy: 'ana', approved: true, comment: 'ship it' };

afterEach(() => setAppContext(undefined));

function useHttp(harness: Harness = h()): void {
  setAppContext({ machine: harness.machine, pool: db().pool, transport: harness.transport, logger: captureLogger(harness.logs) });
}

async function postSignal(jobId: string, name: string, body: unknown) {
  return call(signalJobHandler, 'POST', `jobs/${jobId}/signals/${name}`, {
    params: { jobId, name },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Waits until the job is PROCESSING at `stage` and that stage has started (so it waits for its signal). */
async function waitUntilWaiting(machine: CoreMachine, jobId: string, stage = 2, timeoutMs = 20_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await machine.getJob(jobId);
    if (job.status === 'PROCESSING' && job.stage === stage && job.stages[stage - 1]?.status === 'PROCESSING') return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} never waited at stage ${stage}: ${job.status} at ${job.stage}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function submitAndWait(title: string, pages = 3): Promise<string> {
  const { job } = await h().machine.submitJob('approved_publish', { title, pages });
  await waitUntilWaiting(h().machine, job.jobId);
  return job.jobId;
}

async function signalEvents(jobId: string) {
  return (await h().machine.listEvents(jobId)).filter((event) => event.entity === 'signal');
}

test('waitFor: typed declaration, the stage named after its signal, timeoutSeconds carried into the stage definition', () => {
  const gate = approvedPublish.stages[1];
  expect(isSignalStage(gate)).toBe(true);
  expect(gate).toMatchObject({ kind: 'signal', name: 'approval', signal: { name: 'approval' }, timeoutSeconds: 7 * 24 * 3600 });
  const base = defineJob({ type: 'test.gate_rules', parameters: z.object({}) });
  expect(() => base.waitFor({ name: 'a', payload: z.object({}) }).waitFor({ name: 'a', payload: z.object({}) })).toThrow(/already has a stage named "a"/);
  expect(() => base.waitFor({ name: 'Bad Name', payload: z.object({}) })).toThrow(/signal name "Bad Name" must match/);
  expect(() => base.waitFor({ name: 'ok', payload: z.object({}), timeoutSeconds: 0 })).toThrow(/timeoutSeconds/);
});

test("full flow over HTTP: the job waits for free, the signal advances it, its payload is the next stage's previous", async () => {
  useHttp();
  const jobId = await submitAndWait('handbook');
  // Waiting costs nothing: no task, no message, no outbox row for the waiting stage; the janitor leaves it alone.
  const waiting = await h().machine.getJob(jobId);
  expect(waiting.stages[1]).toMatchObject({ name: 'approval', signal: 'approval', status: 'PROCESSING', total: 1, completed: 0 });
  expect(waiting.stages[2]).toMatchObject({ name: 'publish', status: 'PENDING' });
  expect(await h().machine.listTasks(jobId, { stage: 2 })).toEqual([]);
  await h().worker?.drain();
  expect((await db().pool.query('SELECT count(*)::int AS n FROM coremachine.outbox WHERE job_id = $1', [jobId])).rows[0]).toEqual({ n: 0 });
  expect(h().transport.jobs.activeCount + h().transport.tasks.activeCount).toBe(0);
  expect((await h().machine.sweep({ stallAfterMs: 0 })).stalled).toEqual([]);

  const reply = await postSignal(jobId, 'approval', APPROVAL);
  expect(reply.status).toBe(200);
  expect(reply.headers.get('x-coremachine-signal')).toBe('delivered');
  expect(reply.body).toMatchObject({ jobId, stage: 3 });
  const done = await waitForJob(h().machine, jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ title: 'handbook', published: 3, approvedBy: 'ana', outcome: 'published' });
  expect(done.stages.map((s) => [s.name, s.status, s.total, s.completed])).toEqual([
    ['render', 'COMPLETED', 3, 3],
    ['approval', 'COMPLETED', 1, 1],
    ['publish', 'COMPLETED', 3, 3],
  ]);

  // The trail says why the job moved on.
  const events = await signalEvents(jobId);
  expect(events).toEqual([expect.objectContaining({ entity: 'signal', stage: 2, from: 'WAITING', to: 'RECEIVED', signal: 'approval' })]);

  // The same signal again: 200, idempotent, nothing changes. A different payload: 409.
  const repeat = await postSignal(jobId, 'approval', { comment: 'ship it', approved: true, approvedBy: 'ana' });
  expect(repeat.status).toBe(200);
  expect(repeat.headers.get('x-coremachine-signal')).toBe('repeated');
  expect(repeat.body).toMatchObject({ jobId, status: 'COMPLETED' });
  const different = await postSignal(jobId, 'approval', { ...APPROVAL, approved: false });
  expect(different.status).toBe(409);
  expect(different.body).toMatchObject({ error: { type: 'SignalRefusedError' } });
  expect((different.body as { error: { message: string } }).error.message).toContain('different payload');
  expect(await signalEvents(jobId)).toHaveLength(1);
});

test('a rejection is a payload like any other: publish fans out nothing and the job completes', async () => {
  const jobId = await submitAndWait('draft', 2);
  const { job, delivered } = await h().machine.deliverSignal(jobId, 'approval', { approvedBy: 'bo', approved: false });
  expect(delivered).toBe(true);
  expect(job.stage).toBe(3);
  const done = await waitForJob(h().machine, jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toEqual({ title: 'draft', published: 0, approvedBy: null, outcome: 'rejected' });
  // Deleting the finished job takes its stored signal with it.
  const stored = async () => (await db().pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.signals WHERE job_id = $1', [jobId])).rows[0];
  expect(await stored()).toEqual({ n: 1 });
  await h().machine.deleteJob(jobId);
  expect(await stored()).toEqual({ n: 0 });
});

test('refusals: 400 bad payload or name, 404 unknown job, 409 wrong name, not yet waiting, stopped job', async () => {
  useHttp();
  const jobId = await submitAndWait('refusals');
  const bad = await postSignal(jobId, 'approval', { approved: 'yes' });
  expect(bad.status).toBe(400);
  expect(bad.body).toMatchObject({ error: { type: 'ValidationError' } });
  expect((bad.body as { error: { issues: Array<{ path: unknown[] }> } }).error.issues.map((issue) => issue.path)).toEqual(
    expect.arrayContaining([['approvedBy'], ['approved']]),
  );
  expect((await postSignal(jobId, 'approval', 'not json')).status).toBe(400);
  expect((await postSignal(jobId, 'Not A Name', APPROVAL)).status).toBe(400);
  expect((await postSignal('0'.repeat(64), 'approval', APPROVAL)).status).toBe(404);
  const wrong = await postSignal(jobId, 'sign-off', APPROVAL);
  expect(wrong.status).toBe(409);
  expect((wrong.body as { error: { message: string } }).error.message).toContain('has no stage that waits for it');
  // Nothing of that was stored: the job still waits, with no signal.
  expect(await signalEvents(jobId)).toEqual([]);
  expect((await h().machine.getJob(jobId)).stages[1]).toMatchObject({ status: 'PROCESSING', completed: 0 });

  // A job that has not reached its waiting stage yet: 409, and nothing stored.
  const h2 = await restart({ worker: false });
  useHttp(h2);
  const { job: early } = await h2.machine.submitJob('approved_publish', { title: 'early', pages: 1 });
  const notYet = await postSignal(early.jobId, 'approval', APPROVAL);
  expect(notYet.status).toBe(409);
  expect((notYet.body as { error: { message: string } }).error.message).toContain('not reached yet');
  // Cancelled while waiting: 409 too.
  await h2.machine.cancelJob(early.jobId);
  await h2.machine.cancelJob(jobId);
  const stopped = await postSignal(jobId, 'approval', APPROVAL);
  expect(stopped.status).toBe(409);
  expect((stopped.body as { error: { message: string } }).error.message).toContain('CANCELLED');
  expect((await db().pool.query('SELECT count(*)::int AS n FROM coremachine.signals WHERE job_id = ANY($1)', [[jobId, early.jobId]])).rows[0]).toEqual({
    n: 0,
  });
});

test('paused while waiting: the signal is taken and counted, the job advances when resumed', async () => {
  const jobId = await submitAndWait('paused');
  await h().machine.pauseJob(jobId);
  const { job, delivered } = await h().machine.deliverSignal(jobId, 'approval', APPROVAL);
  expect(delivered).toBe(true);
  expect(job).toMatchObject({ status: 'PAUSED', stage: 2 });
  expect(job.stages[1]).toMatchObject({ completed: 1 });
  await h().worker?.drain();
  expect((await h().machine.getJob(jobId)).status).toBe('PAUSED');
  await h().machine.resumeJob(jobId);
  const done = await waitForJob(h().machine, jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toMatchObject({ published: 3, approvedBy: 'ana' });
});

test('a resumed job that still waits keeps waiting: no task dispatched, the signal then advances it', async () => {
  const jobId = await submitAndWait('resumed');
  await h().machine.pauseJob(jobId);
  await h().machine.resumeJob(jobId);
  await waitUntilWaiting(h().machine, jobId);
  await h().worker?.drain();
  expect(await h().machine.listTasks(jobId, { stage: 2 })).toEqual([]);
  await h().machine.deliverSignal(jobId, 'approval', APPROVAL);
  expect((await waitForJob(h().machine, jobId)).status).toBe('COMPLETED');
});

test('a signal as a Service Bus message on the submissions queue; malformed or refused ones are dead-lettered with the reason', async () => {
  useHttp();
  const jobId = await submitAndWait('by-message');
  invocationLogs.length = 0;
  await submissionHandler({ jobId, signal: 'approval', payload: APPROVAL }, invocation());
  expect(invocationLogs.some((line) => line.includes('coremachine.signal.accepted') && line.includes('"delivered":true'))).toBe(true);
  expect((await waitForJob(h().machine, jobId)).status).toBe('COMPLETED');
  // The same message redelivered: completed, nothing changes.
  await expect(submissionHandler(JSON.stringify({ jobId, signal: 'approval', payload: APPROVAL }), invocation())).resolves.toBeUndefined();
  expect(await signalEvents(jobId)).toHaveLength(1);

  // Malformed, payload failing the schema, and refused (different payload): none is retried.
  await expect(submissionHandler({ jobId, signal: 'Bad Name', payload: {} }, invocation())).resolves.toBeUndefined();
  await expect(submissionHandler({ jobId, signal: 'approval', payload: { approved: 1 } }, invocation())).resolves.toBeUndefined();
  await expect(submissionHandler({ jobId, signal: 'approval', payload: { ...APPROVAL, approvedBy: 'eve' } }, invocation())).resolves.toBeUndefined();
  const letters = await h().machine.listDeadLetters();
  expect(letters.map((letter) => [letter.queue, letter.reason]).reverse()).toEqual([
    ['coremachine-submissions', 'ValidationError'],
    ['coremachine-submissions', 'ValidationError'],
    ['coremachine-submissions', 'SignalRefusedError'],
  ]);
  expect(letters[0]?.description).toContain('different payload');
  expect((await h().machine.getJob(jobId)).result).toMatchObject({ approvedBy: 'ana' });
});

test('concurrent signals from four engine instances with their own pools: exactly one delivery, one advance', async () => {
  const jobId = await submitAndWait('race');
  // Pools made by newPool are ended when the test database is dropped.
  const pools = Array.from({ length: 4 }, () => db().newPool(3));
  const machines = await Promise.all(
    pools.map((pool) => CoreMachine.create({ pool, registry: h().registry, transport: h().transport, logger: captureLogger(h().logs) })),
  );
  // Same payload from everyone: one delivers, the rest are idempotent repeats.
  const same = await Promise.all(machines.flatMap((machine) => [1, 2, 3].map(() => machine.deliverSignal(jobId, 'approval', APPROVAL))));
  expect(same.filter((r) => r.delivered)).toHaveLength(1);
  const done = await waitForJob(h().machine, jobId);
  expect(done.status).toBe('COMPLETED');
  const jobEvents = (await h().machine.listEvents(jobId)).filter((e) => e.entity === 'job');
  expect(jobEvents.filter((e) => e.from === 'PROCESSING' && e.to === 'QUEUED' && e.stage === 3)).toHaveLength(1);
  expect(await signalEvents(jobId)).toHaveLength(1);
  // The next stage was started once: its three tasks exist once each, each run once.
  expect((await h().machine.listTasks(jobId, { stage: 3 })).map((t) => [t.taskIndex, t.attempt, t.status])).toEqual([
    [0, 1, 'COMPLETED'],
    [1, 1, 'COMPLETED'],
    [2, 1, 'COMPLETED'],
  ]);

  // Different payloads racing: exactly one is accepted, every other one is refused with 409's error.
  const second = await submitAndWait('race-2');
  const results = await Promise.allSettled(
    machines.map((machine, i) => machine.deliverSignal(second, 'approval', { approvedBy: `approver-${i}`, approved: true })),
  );
  expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  expect(refused).toHaveLength(3);
  for (const r of refused) expect(r.reason).toBeInstanceOf(SignalRefusedError);
  const winner = results.findIndex((r) => r.status === 'fulfilled');
  expect((await waitForJob(h().machine, second)).result).toMatchObject({ approvedBy: `approver-${winner}`, published: 3 });
});

test("a crash after the signal committed (the next stage's message never sent): the janitor re-sends it from the outbox", async () => {
  let failSends = true;
  const h2 = await restart({
    wrapTransport: (inner): Transport => ({
      name: 'crashing',
      durable: false,
      sendReceipt: (queue, receipt, properties) => inner.sendReceipt(queue, receipt, properties),
      publishEvents: (events) => inner.publishEvents(events),
      close: () => inner.close(),
      sendTaskMessages: (m) => inner.sendTaskMessages(m),
      scheduleTaskMessages: (m, at) => inner.scheduleTaskMessages(m, at),
      sendJobMessages: async (messages) => {
        if (failSends && messages.some((m) => m.stage === 3)) throw new Error('process died before the send');
        await inner.sendJobMessages(messages);
      },
    }),
  });
  const { job } = await h2.machine.submitJob('approved_publish', { title: 'crash', pages: 2 });
  await waitUntilWaiting(h2.machine, job.jobId);
  await expect(h2.machine.deliverSignal(job.jobId, 'approval', APPROVAL)).rejects.toThrow('process died before the send');
  // The signal and the advance committed; only the message is missing, kept in the outbox.
  const stuck = await h2.machine.getJob(job.jobId);
  expect(stuck).toMatchObject({ status: 'QUEUED', stage: 3 });
  expect((await db().pool.query("SELECT count(*)::int AS n FROM coremachine.outbox WHERE job_id = $1 AND kind = 'job'", [job.jobId])).rows[0]).toEqual({
    n: 1,
  });
  // The client retries: the same signal is a repeat, not a second advance.
  expect((await h2.machine.deliverSignal(job.jobId, 'approval', APPROVAL)).delivered).toBe(false);
  failSends = false;
  const report = await h2.machine.sweep({ outboxAgeMs: 0 });
  expect(report.outboxSent).toBeGreaterThanOrEqual(1);
  const done = await waitForJob(h2.machine, job.jobId);
  expect(done.status).toBe('COMPLETED');
  expect(done.result).toMatchObject({ published: 2, approvedBy: 'ana' });
});

test("waitFor timeoutSeconds is the stage deadline: past it (controllable clock: the job's clocks moved back) the job is FAILED with a Timeout and a late signal is refused", async () => {
  useHttp();
  const jobId = await submitAndWait('too late');
  const waiting = await h().machine.getJob(jobId);
  // approved_publish waits 7 days for its approval: the stage deadline is set when the wait starts.
  expect(waiting.stageDeadline).not.toBeNull();
  expect(new Date(String(waiting.stageDeadline)).getTime() - Date.now()).toBeGreaterThan(7 * 24 * 3600_000 - 60_000);
  // Six days on, it still waits; a sweep does nothing to it.
  const by = (ms: number) =>
    db().pool.query(`UPDATE coremachine.jobs SET stage_deadline_at = stage_deadline_at - $2::interval WHERE job_id = $1`, [jobId, `${ms} milliseconds`]);
  await by(6 * 24 * 3600_000);
  await h().machine.sweep();
  expect((await h().machine.getJob(jobId)).status).toBe('PROCESSING');
  // Past seven days, the janitor's sweep fails it with the stage's Timeout.
  await by(24 * 3600_000 + 1_000);
  const report = await h().machine.sweep();
  expect(report.timedOutJobs).toBe(1);
  const failed = await h().machine.getJob(jobId);
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatchObject({ type: 'DeadlineExceededError', stage: 2, scope: 'stage' });
  // The signal arriving now is refused (409): the job no longer waits for it.
  expect((await postSignal(jobId, 'approval', APPROVAL)).status).toBe(409);
});
