import { z } from 'zod';
import { defineJob, defineTask, TaskFailure } from '../models';
import { MAX_RECORDED_MESSAGE_LENGTH } from '../core/errors';
import { MAX_RETRY_DELAY_MS } from '../core/engine/retry-policy';
import { useHarnessPerTest, waitForJob, type Harness } from './support/harness';

/**
 * What an in-process handler's failure can put into the database is bounded, as a remote
 * worker's report is: its retryAfterMs by the retry policy, its message by 8 KB.
 */
const ctx = useHarnessPerTest();
let h: Harness;
beforeEach(() => {
  h = ctx.h();
});

const HUGE_DELAY = Number.MAX_SAFE_INTEGER; // ≈ 2^53 ms: as a Date offset, an invalid date

const rateLimited = (type: string, maxDelayMs?: number) =>
  defineTask({
    type,
    parameters: z.object({ index: z.number().int() }),
    retry: { maxAttempts: 2, initialDelayMs: 0, jitter: 0, ...(maxDelayMs === undefined ? {} : { maxDelayMs }) },
    handler: () => Promise.reject(new TaskFailure('rate limited', { retryAfterMs: HUGE_DELAY })),
  });

const jobOf = (type: string, task: ReturnType<typeof rateLimited>) =>
  defineJob({ type, parameters: z.object({ n: z.number().int() }) })
    .stage({ name: 'only', task, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index })) })
    .finalize(() => Promise.resolve(null));

async function retryAtOfOnlyTask(jobId: string): Promise<Date> {
  for (let i = 0; i < 500; i++) {
    const row = await ctx
      .db()
      .pool.query<{ retry_at: Date | null }>("SELECT retry_at FROM coremachine.tasks WHERE job_id = $1 AND status = 'QUEUED' AND retry_at IS NOT NULL", [
        jobId,
      ]);
    if (row.rows[0]?.retry_at) return row.rows[0].retry_at;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`job ${jobId} never scheduled a retry`);
}

test("a handler's retryAfterMs is capped by the task type's retry.maxDelayMs, else by MAX_RETRY_DELAY_MS", async () => {
  h.registry.register(jobOf('bounds.capped_job', rateLimited('bounds.capped', 60_000)), jobOf('bounds.uncapped_job', rateLimited('bounds.uncapped')));
  for (const [jobType, cap] of [
    ['bounds.capped_job', 60_000],
    ['bounds.uncapped_job', MAX_RETRY_DELAY_MS],
  ] as const) {
    const before = Date.now();
    const { job } = await h.machine.submitJob(jobType, { n: 1 });
    const retryAt = await retryAtOfOnlyTask(job.jobId);
    expect(Number.isNaN(retryAt.getTime())).toBe(false);
    expect(retryAt.getTime()).toBeGreaterThanOrEqual(before + cap - 1000);
    expect(retryAt.getTime()).toBeLessThanOrEqual(Date.now() + cap + 1000);
    // The retry is far off: stop the job so nothing is left waiting.
    await h.machine.cancelJob(job.jobId);
  }
});

test('a huge error message from an in-process handler is recorded cut to 8 KB with a marker, in the task, the job and the events', async () => {
  const message = 'x'.repeat(200_000);
  const loud = defineTask({ type: 'bounds.loud', parameters: z.object({ index: z.number().int() }), handler: () => Promise.reject(new Error(message)) });
  h.registry.register(
    defineJob({ type: 'bounds.loud_job', parameters: z.object({ n: z.number().int() }) })
      .stage({ name: 'only', task: loud, fanOut: () => [{ index: 0 }] })
      .finalize(() => Promise.resolve(null)),
  );
  const { job } = await h.machine.submitJob('bounds.loud_job', { n: 1 });
  const done = await waitForJob(h.machine, job.jobId);
  expect(done.status).toBe('FAILED');
  const [task] = await h.machine.listTasks(job.jobId);
  const taskEvent = (await h.machine.listEvents(job.jobId)).find((e) => e.entity === 'task' && e.to === 'FAILED');
  for (const recorded of [done.error, task?.error, taskEvent?.error, task?.error?.cause]) {
    expect(recorded?.message.length).toBeLessThanOrEqual(MAX_RECORDED_MESSAGE_LENGTH);
    expect(recorded?.message).toMatch(/^x{7000,}.*truncated 200000 characters/);
  }
});
