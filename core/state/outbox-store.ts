import type { Queryable } from '../db/pool';

/** The outbox table: message intents written with the state change that needs them (see engine/outbox.ts). */

/** The kinds of intent the outbox holds (one message, every queued task of a stage, one task message). */
export type OutboxKind = 'job' | 'stage_tasks' | 'task' | 'event';

export interface OutboxRowInput {
  kind: OutboxKind;
  jobId: string;
  payload: unknown;
  notBefore: Date;
}

export interface OutboxRow {
  id: string;
  kind: OutboxKind;
  job_id: string;
  payload: Record<string, unknown>;
  not_before: Date;
  traceparent: string | null;
}

/** One statement for all intents, in order; each row carries its job's trace context. */
export async function insertOutboxRows(db: Queryable, rows: readonly OutboxRowInput[]): Promise<Array<{ id: string; traceparent: string | null }>> {
  if (rows.length === 0) return [];
  const result = await db.query<{ id: string; traceparent: string | null }>({
    name: 'cm_outbox_insert',
    text: `INSERT INTO coremachine.outbox (kind, job_id, payload, not_before, traceparent)
           SELECT i.kind, i.job_id, i.payload, i.not_before, (SELECT j.traceparent FROM coremachine.jobs j WHERE j.job_id = i.job_id)
             FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[]) WITH ORDINALITY AS i(kind, job_id, payload, not_before, ord)
            ORDER BY i.ord
           RETURNING id, traceparent`,
    values: [rows.map((r) => r.kind), rows.map((r) => r.jobId), rows.map((r) => JSON.stringify(r.payload)), rows.map((r) => r.notBefore)],
  });
  return result.rows;
}

export async function deleteOutboxRows(db: Queryable, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.query({ name: 'cm_outbox_delete', text: 'DELETE FROM coremachine.outbox WHERE id = ANY($1::bigint[])', values: [ids] });
}

/**
 * Rows older than `olderThanMs` (their dispatcher crashed or failed), due within the hour, locked
 * with SKIP LOCKED so several sweepers never send the same row twice.
 */
export async function lockUndispatchedOutboxRows(db: Queryable, olderThanMs: number, limit: number): Promise<OutboxRow[]> {
  const result = await db.query<OutboxRow>({
    name: 'cm_outbox_undispatched',
    text: `SELECT id, kind, job_id, payload, not_before, traceparent FROM coremachine.outbox
            WHERE created_at < now() - make_interval(secs => $1::float8 / 1000) AND not_before <= now() + interval '1 hour'
            ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`,
    values: [olderThanMs, limit],
  });
  return result.rows;
}
