import { createHash } from 'node:crypto';
import { insertJob } from '../core/state/jobs-store';
import { insertStage } from '../core/state/stages-store';
import { startHarness, useTestDatabase } from './support/harness';

// The jobs here are only listed, never run: their rows are written directly, so nothing is left PROCESSING by an engine path.
const db = useTestDatabase({ checkAfterEach: false });

test("the job list carries each job's current stage counters, its row's and its shards' added up; null before that stage starts", async () => {
  const h = await startHarness(db.pool, { worker: false });
  try {
    const id = (name: string) => createHash('sha256').update(name).digest('hex');
    const job = (name: string) => insertJob(db.pool, { jobId: id(name), jobType: 'hello_world', jobVersion: 1, totalStages: 2, parameters: { name } });
    await job('not-started');
    await job('running');
    await job('moved-on');
    // Counted as commits count: some in the stage row (folded there), some in its backend's shard (migration 014).
    await insertStage(db.pool, { jobId: id('running'), stage: 1, name: 'greet', total: 10, maxFailures: 0 });
    await db.pool.query('UPDATE coremachine.stages SET completed = 3 WHERE job_id = $1 AND stage = 1', [id('running')]);
    await db.pool.query('INSERT INTO coremachine.stage_counts (job_id, stage, shard, completed, failed) VALUES ($1, 1, 5, 2, 1)', [id('running')]);
    // At stage 2, whose row does not exist yet: stage 1's counts are not shown as stage 2's.
    await insertStage(db.pool, { jobId: id('moved-on'), stage: 1, name: 'greet', total: 1, maxFailures: 0 });
    await db.pool.query(`UPDATE coremachine.jobs SET stage = 2 WHERE job_id = $1`, [id('moved-on')]);

    const { jobs } = await h.machine.listJobs({ jobType: 'hello_world' });
    const progress = Object.fromEntries(jobs.map((listed) => [listed.jobId, listed.progress]));
    expect(progress).toEqual({
      [id('not-started')]: null,
      [id('running')]: { stage: 1, name: 'greet', status: 'PROCESSING', total: 10, completed: 5, failed: 1 },
      [id('moved-on')]: null,
    });
  } finally {
    await h.stop();
  }
});
