import { createHash } from 'node:crypto';
import { insertJob } from '../core/state/jobs-store';
import { startHarness, useTestDatabase } from './support/harness';

// The jobs here are only listed, never run: nothing is left PROCESSING by an engine path.
const db = useTestDatabase({ checkAfterEach: false });

test('paging the job list with a small limit returns every job once, in order, even when many share a millisecond', async () => {
  const h = await startHarness(db.pool, { worker: false });
  try {
    // 25 jobs in one transaction share created_at to the microsecond; 25 more in a concurrent burst
    // land within a few milliseconds of each other.
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      for (let i = 0; i < 25; i++)
        await insertJob(client, {
          jobId: createHash('sha256').update(`same-instant-${i}`).digest('hex'),
          jobType: 'hello_world',
          jobVersion: 1,
          totalStages: 2,
          parameters: { n: 1 },
        });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await Promise.all(Array.from({ length: 25 }, (_, i) => h.machine.submitJob('hello_world', { n: 100 + i })));
    const stored = await db.pool.query<{ same_millisecond: number }>(
      `SELECT count(*)::int AS same_millisecond FROM coremachine.jobs GROUP BY date_trunc('milliseconds', created_at) ORDER BY 1 DESC LIMIT 1`,
    );
    expect(stored.rows[0]?.same_millisecond).toBeGreaterThanOrEqual(25);

    const all = (await h.machine.listJobs({ limit: 100 })).jobs.map((job) => job.jobId);
    expect(all).toHaveLength(50);
    const paged: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const page: { jobs: Array<{ jobId: string }>; nextCursor: string | null } = await h.machine.listJobs({ limit: 4, ...(cursor ? { cursor } : {}) });
      paged.push(...page.jobs.map((job) => job.jobId));
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    expect(paged).toEqual(all);
    expect(new Set(paged).size).toBe(50);
  } finally {
    await h.stop();
  }
});
