import type { StageStatus } from '../../models';
import type { Queryable } from '../db/pool';
import type { StageRow } from './rows';

export async function insertStage(
  db: Queryable,
  stage: { jobId: string; stage: number; name: string; total: number; maxFailures: number },
): Promise<StageRow> {
  const result = await db.query<StageRow>({
    name: 'cm_insert_stage',
    text: `INSERT INTO coremachine.stages (job_id, stage, name, status, total, max_failures)
           VALUES ($1, $2, $3, 'PROCESSING', $4, $5) RETURNING *`,
    values: [stage.jobId, stage.stage, stage.name, stage.total, stage.maxFailures],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`stage ${stage.stage} of job ${stage.jobId} was not inserted`);
  return row;
}

/** The fan-out finished: the stage's total (and its failure tolerance, which depends on it) is known. */
export async function setStageTotal(db: Queryable, jobId: string, stage: number, total: number, maxFailures: number): Promise<StageRow> {
  const result = await db.query<StageRow>({
    name: 'cm_set_stage_total',
    text: 'UPDATE coremachine.stages SET total = $3, max_failures = $4 WHERE job_id = $1 AND stage = $2 RETURNING *',
    values: [jobId, stage, total, maxFailures],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`stage ${stage} of job ${jobId} vanished while its tasks were created`);
  return row;
}

export async function findStage(db: Queryable, jobId: string, stage: number): Promise<StageRow | null> {
  const result = await db.query<StageRow>({
    name: 'cm_find_stage',
    text: 'SELECT * FROM coremachine.stages WHERE job_id = $1 AND stage = $2',
    values: [jobId, stage],
  });
  return result.rows[0] ?? null;
}

export async function listStages(db: Queryable, jobId: string): Promise<StageRow[]> {
  const result = await db.query<StageRow>({
    name: 'cm_list_stages',
    text: 'SELECT * FROM coremachine.stages WHERE job_id = $1 ORDER BY stage',
    values: [jobId],
  });
  return result.rows;
}

/**
 * Moves a stage's counters by the completions and failures of one transaction. The row lock this
 * takes serialises concurrent completers, so exactly one of them sees completed + failed = total.
 */
export async function countStageResults(
  db: Queryable,
  jobId: string,
  stage: number,
  completed: number,
  failed: number,
): Promise<StageRow> {
  const result = await db.query<StageRow>({
    name: 'cm_count_stage_results',
    text: `UPDATE coremachine.stages SET completed = completed + $3, failed = failed + $4
           WHERE job_id = $1 AND stage = $2 RETURNING *`,
    values: [jobId, stage, completed, failed],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`stage ${stage} of job ${jobId} does not exist but has task results`);
  return row;
}

/** Compare-and-set on the stage's own status. */
export async function finishStage(
  db: Queryable,
  jobId: string,
  stage: number,
  from: StageStatus,
  to: StageStatus,
): Promise<StageRow | null> {
  const result = await db.query<StageRow>({
    name: 'cm_finish_stage',
    text: `UPDATE coremachine.stages SET status = $4, finished_at = GREATEST(now(), started_at)
           WHERE job_id = $1 AND stage = $2 AND status = $3 RETURNING *`,
    values: [jobId, stage, from, to],
  });
  return result.rows[0] ?? null;
}
