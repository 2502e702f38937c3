import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestKit, type TestKit } from 'coremachine/testing';
import { registration } from './index';

// One kit for the file: its own database (on DATABASE_URL's server, else an embedded PostgreSQL),
// the in-process transport and workers, dropped again at the end.
let kit: TestKit;
before(async () => {
  kit = await createTestKit({ registration });
});
after(async () => {
  await kit.close();
});

const texts = ['the quick brown fox', 'jumps over', 'the lazy dog'];

test('approved, it counts the words of every text', async () => {
  const { job } = await kit.submitJob('word_report', { texts });
  await kit.waitForSignal(job.jobId, 'approval');
  await kit.deliverSignal(job.jobId, 'approval', { approvedBy: 'ana' });
  const done = await kit.waitForJob(job.jobId);
  assert.equal(done.status, 'COMPLETED');
  assert.deepEqual(done.result, { texts: 3, words: 9, approvedBy: 'ana' });
});

test('a count that fails is tried again', async () => {
  const failure = kit.failTask('word_report.count', { times: 2 });
  const { job } = await kit.submitJob('word_report', { texts: ['one two three'] });
  await kit.waitForSignal(job.jobId, 'approval');
  await kit.deliverSignal(job.jobId, 'approval', { approvedBy: 'ana' });
  const done = await kit.waitForJob(job.jobId);
  assert.equal(done.status, 'COMPLETED');
  assert.equal(failure.failures, 2);
  const [task] = await kit.listTasks(job.jobId, { stage: 2 });
  assert.equal(task?.attempt, 3);
});

test('without an approval within a day, the job fails with a DeadlineExceededError', async () => {
  const { job } = await kit.submitJob('word_report', { texts: ['never approved'] });
  await kit.waitForSignal(job.jobId, 'approval');
  await kit.clock.advance({ hours: 25 });
  const failed = await kit.getJob(job.jobId);
  assert.equal(failed.status, 'FAILED');
  assert.equal(failed.error?.type, 'DeadlineExceededError');
});
