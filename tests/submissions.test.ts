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

const jobCount = async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM coremachine.jobs')).rows[0]?.n;

test('a job submitted as a queue message gets the same id, validation and idempotency as over HTTP', async () => {
  const viaHttp = await h.machine.submitJob('hello_world', { n: 6 });
  h.transport.submissions.send([{ messageId: 'sub-1', body: { jobType: 'hello_world', parameters: { n: 6 } } }]);
  h.transport.submissions.send([{ messageId: 'sub-2', body: { jobType: 'hello_world', parameters: { n: 9 } } }]);
  await h.worker?.drain();
  expect(await jobCount()).toBe(2);
  const other = await h.machine.listJobs({ jobType: 'hello_world' });
  const nine = other.jobs.find((job) => (job.parameters as { n: number }).n === 9);
  expect((await waitForJob(h.machine, nine?.jobId ?? '')).status).toBe('COMPLETED');
  expect((await waitForJob(h.machine, viaHttp.job.jobId)).status).toBe('COMPLETED');
  expect(h.transport.submissions.deadLetters).toEqual([]);
});

test('an invalid submission is dead-lettered at once with the zod issues as the reason, and nothing is stored', async () => {
  const before = await jobCount();
  h.transport.submissions.send([
    { messageId: 'bad-params', body: { jobType: 'hello_world', parameters: { n: 'many' } } },
    { messageId: 'bad-type', body: { jobType: 'no_such_job', parameters: {} } },
    { messageId: 'bad-shape', body: { type: 'hello_world' } },
  ]);
  await h.worker?.drain();
  expect(await jobCount()).toBe(before);
  const dead = Object.fromEntries(h.transport.submissions.deadLetters.map((d) => [d.messageId, d]));
  expect(dead['bad-params']).toMatchObject({ deadLetterReason: 'ValidationError', deliveryCount: 1 });
  expect(dead['bad-params']?.deadLetterErrorDescription).toMatch(/expected number.*→ at n/);
  expect(dead['bad-type']).toMatchObject({ deadLetterReason: 'UnknownJobTypeError', deliveryCount: 1 });
  expect(dead['bad-shape']?.deadLetterReason).toBe('ValidationError');
  // The dead-letter consumer records them where an operator sees them.
  const recorded = await h.machine.listDeadLetters();
  expect(
    recorded
      .filter((r) => r.queue === 'coremachine-submissions')
      .map((r) => r.messageId)
      .sort(),
  ).toEqual(['bad-params', 'bad-shape', 'bad-type']);
});
