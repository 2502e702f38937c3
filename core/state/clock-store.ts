import type { Queryable } from '../db/pool';

/**
 * Moves every clock of the database's jobs back by `ms`, exactly as if that much wall-clock time
 * had passed: submission and finish times, the job's and the stage's deadlines, stage starts.
 * Deadlines and retention are judged by PostgreSQL's now() against these columns, so a test
 * (coremachine/testing's clock) can make an hour pass in a statement. Leases are left alone: a
 * host that kept running would have renewed them.
 */
export async function shiftJobClocks(db: Queryable, ms: number): Promise<void> {
  const by = `${ms} milliseconds`;
  await db.query(
    `UPDATE coremachine.jobs SET created_at = created_at - $1::interval, finished_at = finished_at - $1::interval,
            deadline_at = deadline_at - $1::interval, stage_deadline_at = stage_deadline_at - $1::interval`,
    [by],
  );
  await db.query('UPDATE coremachine.stages SET started_at = started_at - $1::interval, finished_at = finished_at - $1::interval', [by]);
}
