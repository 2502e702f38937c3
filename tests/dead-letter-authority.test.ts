/**
 * The queue a message arrived on decides what it may touch. A system allowed only to send
 * submissions must not be able to fail a job or a task by putting an engine-shaped body on the
 * submissions queue (refused as a submission, then dead-lettered), nor through the submissions
 * queue's own dead-letter sub-queue. Only the engine's own queues' letters fail what they name, and
 * only when the letter is what the engine sent.
 */
import { InvocationContext } from '@azure/functions';
import { jobMessageId, taskMessageId, type TaskQueueMessage } from '../models';
import { setAppContext } from '../functions/app-context';
import { deadLetterHandler, jobMessageHandler, submissionHandler } from '../functions/servicebus-triggers';
import { captureLogger, startHarness, stuckJobs, useHarnessPerTest, waitForJob, type Harness } from './support/harness';
import { createTestDatabase, type TestDatabase } from './support/test-database';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));

function invocation(triggerMetadata: Record<string, unknown>): InvocationContext {
  return new InvocationContext({ functionName: 'test', triggerMetadata, logHandler: () => undefined });
}

async function taskRows(db: TestDatabase, jobId: string) {
  const result = await db.pool.query<{ task_id: string; status: string; attempt: number; stage: number; task_type: string }>(
    'SELECT task_id, status, attempt, stage, task_type FROM coremachine.tasks WHERE job_id = $1 ORDER BY stage, task_index',
    [jobId],
  );
  return result.rows;
}

async function jobRow(db: TestDatabase, jobId: string) {
  return (await db.pool.query<{ status: string; stage: number }>('SELECT status, stage FROM coremachine.jobs WHERE job_id = $1', [jobId])).rows[0];
}

describe('through the Functions triggers (the Service Bus host)', () => {
  let db: TestDatabase;
  let h: Harness;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });
  beforeEach(async () => {
    h = await startHarness(db.pool, { worker: false });
    setAppContext({ machine: h.machine, pool: db.pool, transport: h.transport, logger: captureLogger(h.logs) });
  });
  afterEach(async () => {
    setAppContext(undefined);
    await h.stop();
    expect(await stuckJobs(db.pool)).toEqual([]);
  });

  /** A three-stage job whose first stage's tasks are created and QUEUED: a target with every kind of row. */
  async function jobWithQueuedTasks(): Promise<{ jobId: string; task: TaskQueueMessage }> {
    const { job } = await h.machine.submitJob('test.three_stages', { n: 3, tag: String(Math.random()) });
    const [message] = h.transport.jobs.receive(1);
    if (!message) throw new Error('no job message');
    await h.machine.processJobMessage(message.body);
    h.transport.jobs.complete(message);
    const [first] = h.transport.tasks.receive(1);
    if (!first) throw new Error('no task message');
    h.transport.tasks.abandon(first);
    return { jobId: job.jobId, task: first.body as TaskQueueMessage };
  }

  test('engine-shaped bodies on the submissions queue are refused and recorded, and fail nothing', async () => {
    const { jobId, task } = await jobWithQueuedTasks();
    const before = await taskRows(db, jobId);
    await submissionHandler(task, invocation({ messageId: taskMessageId(task), deliveryCount: 1 }));
    await submissionHandler(
      { jobId, jobType: 'test.three_stages', stage: 1 },
      invocation({ messageId: jobMessageId({ jobId, jobType: 'test.three_stages', stage: 1 }), deliveryCount: 1 }),
    );
    // The same bodies through the submissions queue's own dead-letter sub-queue (e.g. sent with a 1 s time-to-live).
    await deadLetterHandler('coremachine-submissions')(task, invocation({ messageId: taskMessageId(task), deadLetterReason: 'TTLExpiredException' }));
    await deadLetterHandler('coremachine-submissions')(
      { jobId, jobType: 'test.three_stages', stage: 1 },
      invocation({ messageId: `${jobId}:s1`, deadLetterReason: 'TTLExpiredException' }),
    );

    expect(await jobRow(db, jobId)).toEqual({ status: 'PROCESSING', stage: 1 });
    expect(await taskRows(db, jobId)).toEqual(before);
    const letters = await h.machine.listDeadLetters();
    expect(letters).toHaveLength(4);
    // Recorded, and not attributed to the job a stranger named.
    expect(letters.every((letter) => letter.queue === 'coremachine-submissions' && letter.jobId === null && letter.taskId === null)).toBe(true);
    await h.machine.cancelJob(jobId);
  });

  test('a tasks-queue letter fails its task only under the message id the engine gave it, and only the row it describes', async () => {
    const { jobId, task } = await jobWithQueuedTasks();
    const letter = (messageId: string, body: unknown) =>
      deadLetterHandler('coremachine-tasks')(
        body,
        invocation({ messageId, deadLetterReason: 'MaxDeliveryCountExceeded', deadLetterErrorDescription: 'delivered 10 times' }),
      );
    await letter('forged-id', task);
    await letter(taskMessageId({ ...task, stage: 2 }), { ...task, stage: 2 });
    await letter(taskMessageId({ ...task, taskType: 'test.failing' }), { ...task, taskType: 'test.failing' });
    await letter(taskMessageId({ ...task, attempt: 5 }), { ...task, attempt: 5 });
    expect((await taskRows(db, jobId)).filter((row) => row.status !== 'QUEUED')).toEqual([]);
    expect(await jobRow(db, jobId)).toEqual({ status: 'PROCESSING', stage: 1 });

    // The engine's own letter (a rescheduled copy keeps its original id before the suffix) fails the task.
    await letter(`${taskMessageId(task)}~r2`, task);
    expect((await taskRows(db, jobId)).find((row) => row.task_id === task.taskId)?.status).toBe('FAILED');
    expect((await waitForJob(h.machine, jobId, 2000)).status).toBe('FAILED');
  });

  test('a jobs-queue message whose job type does not match the job is recorded, and the job runs on', async () => {
    const { job } = await h.machine.submitJob('test.three_stages', { n: 2, tag: 'wrong-type' });
    const wrong = { jobId: job.jobId, jobType: 'hello_world', stage: 1 };
    await expect(jobMessageHandler(wrong, invocation({ messageId: jobMessageId(wrong), deliveryCount: 1 }))).resolves.toBeUndefined();
    expect(await jobRow(db, job.jobId)).toEqual({ status: 'QUEUED', stage: 1 });
    const [letter] = await h.machine.listDeadLetters();
    expect(letter).toMatchObject({ queue: 'coremachine-jobs', reason: 'MalformedMessageError', jobId: job.jobId });
    expect(letter?.description).toContain('job type "hello_world"');
    // The same letter arriving from the jobs queue's dead-letter sub-queue changes nothing either.
    await deadLetterHandler('coremachine-jobs')(wrong, invocation({ messageId: jobMessageId(wrong), deadLetterReason: 'MaxDeliveryCountExceeded' }));
    expect(await jobRow(db, job.jobId)).toEqual({ status: 'QUEUED', stage: 1 });
    await h.machine.cancelJob(job.jobId);
  });

  test('a job message for a stage the job has not reached is dead-lettered at once as malformed', async () => {
    const { job } = await h.machine.submitJob('test.three_stages', { n: 2, tag: 'ahead' });
    const ahead = { jobId: job.jobId, jobType: 'test.three_stages', stage: 3 };
    // Delivery 1 of 10: not abandoned (rethrown) for nine more tries.
    await expect(jobMessageHandler(ahead, invocation({ messageId: jobMessageId(ahead), deliveryCount: 1 }))).resolves.toBeUndefined();
    const [letter] = await h.machine.listDeadLetters();
    expect(letter).toMatchObject({ queue: 'coremachine-jobs', reason: 'MalformedMessageError' });
    expect(await jobRow(db, job.jobId)).toEqual({ status: 'QUEUED', stage: 1 });
    await h.machine.cancelJob(job.jobId);
  });
});

describe('through the in-process transport (coremachine dev and the tests)', () => {
  const ctx = useHarnessPerTest();

  test('engine-shaped bodies sent to the submissions queue fail nothing; the job waiting for its signal still completes', async () => {
    const h = ctx.h();
    const { job } = await h.machine.submitJob('approved_publish', { title: 'attack', pages: 2 });
    const atGate = async () => {
      const current = await h.machine.getJob(job.jobId);
      return current.status === 'PROCESSING' && current.stage === 2;
    };
    for (let i = 0; i < 1000 && !(await atGate()); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await h.machine.getJob(job.jobId)).toMatchObject({ status: 'PROCESSING', stage: 2 });
    const jobBody = { jobId: job.jobId, jobType: 'approved_publish', stage: 2 };
    h.transport.submissions.send([{ messageId: jobMessageId(jobBody), body: jobBody }]);
    await h.worker?.drain();
    expect(h.transport.submissions.deadLetters.map((letter) => letter.deadLetterReason)).toEqual(['ValidationError']);
    expect((await h.machine.listDeadLetters()).map((letter) => [letter.queue, letter.jobId])).toEqual([['coremachine-submissions', null]]);
    expect(await h.machine.getJob(job.jobId)).toMatchObject({ status: 'PROCESSING', stage: 2 });

    await h.machine.deliverSignal(job.jobId, 'approval', { approvedBy: 'ana', approved: true });
    expect(await waitForJob(h.machine, job.jobId)).toMatchObject({ status: 'COMPLETED', result: { published: 2 } });
  });

  test('a job message for a stage ahead is dead-lettered on its first delivery', async () => {
    const h = ctx.h();
    const { job } = await h.machine.submitJob('test.three_stages', { n: 2, tag: 'ahead-in-process' });
    const ahead = { jobId: job.jobId, jobType: 'test.three_stages', stage: 3 };
    h.transport.jobs.send([{ messageId: jobMessageId(ahead), body: ahead }]);
    expect((await waitForJob(h.machine, job.jobId)).status).toBe('COMPLETED');
    await h.worker?.drain();
    expect(h.transport.jobs.deadLetters.map((letter) => [letter.deadLetterReason, letter.deliveryCount])).toEqual([['MalformedMessageError', 1]]);
  });
});
