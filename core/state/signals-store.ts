import type { Queryable } from '../db/pool';
import type { StageRow } from './rows';

/** Waiting stages and the signals delivered to them (migration 013). */

export interface SignalRow {
  job_id: string;
  name: string;
  stage: number;
  payload: unknown;
  digest: string;
  received_at: Date;
}

/** A stage that waits for `signal`: no tasks, total 1, completed by the signal's delivery. */
export async function insertWaitingStage(db: Queryable, stage: { jobId: string; stage: number; name: string; signal: string }): Promise<StageRow> {
  const result = await db.query<StageRow>({
    name: 'cm_insert_waiting_stage',
    text: `INSERT INTO coremachine.stages (job_id, stage, name, status, total, max_failures, signal)
           VALUES ($1, $2, $3, 'PROCESSING', 1, 0, $4) RETURNING *`,
    values: [stage.jobId, stage.stage, stage.name, stage.signal],
  });
  const row = result.rows[0];
  if (!row) throw new Error(`stage ${stage.stage} of job ${stage.jobId} was not inserted`);
  return row;
}

/**
 * Counts the signal as the waiting stage's one result, by compare-and-set: only a stage that is
 * still PROCESSING, waits for this very signal and has not counted one yet. Null otherwise.
 */
export async function completeWaitingStage(db: Queryable, jobId: string, stage: number, signal: string): Promise<StageRow | null> {
  const result = await db.query<StageRow>({
    name: 'cm_complete_waiting_stage',
    text: `UPDATE coremachine.stages SET completed = 1
           WHERE job_id = $1 AND stage = $2 AND signal = $3 AND status = 'PROCESSING' AND completed = 0 AND failed = 0
           RETURNING *`,
    values: [jobId, stage, signal],
  });
  return result.rows[0] ?? null;
}

/** Stores a delivered signal; false when one of that name was already stored for the job. */
export async function insertSignal(db: Queryable, signal: { jobId: string; name: string; stage: number; payload: unknown; digest: string }): Promise<boolean> {
  const result = await db.query({
    name: 'cm_insert_signal',
    text: `INSERT INTO coremachine.signals (job_id, name, stage, payload, digest) VALUES ($1, $2, $3, $4::jsonb, $5)
           ON CONFLICT (job_id, name) DO NOTHING`,
    values: [signal.jobId, signal.name, signal.stage, JSON.stringify(signal.payload ?? null), signal.digest],
  });
  return (result.rowCount ?? 0) > 0;
}

export async function findSignal(db: Queryable, jobId: string, name: string): Promise<SignalRow | null> {
  const result = await db.query<SignalRow>({
    name: 'cm_find_signal',
    text: 'SELECT * FROM coremachine.signals WHERE job_id = $1 AND name = $2',
    values: [jobId, name],
  });
  return result.rows[0] ?? null;
}

/** The payload delivered to a waiting stage: its one result. */
export async function findSignalOfStage(db: Queryable, jobId: string, stage: number): Promise<SignalRow | null> {
  const result = await db.query<SignalRow>({
    name: 'cm_find_signal_of_stage',
    text: 'SELECT * FROM coremachine.signals WHERE job_id = $1 AND stage = $2',
    values: [jobId, stage],
  });
  return result.rows[0] ?? null;
}
