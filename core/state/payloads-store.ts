import type { Queryable } from '../db/pool';
import type { PayloadField, PayloadOwner, PayloadRef } from '../payloads/payload-store';
import { textArray } from './pg-arrays';

/** References to the payload store (migration 019): what points at which blob, and the orphan sweep's place. */

export interface StoredValueRow {
  /** The value when it is inline (null when stored, or when there is none). */
  value: unknown;
  ref: PayloadRef | null;
  /** The task's or job's status: a result exists only once it completed. */
  status: string;
}

/**
 * One value as the API serves it: a task's result or parameters (the task must belong to the
 * job), or the job's result. Null when there is no such task or job.
 */
export async function findStoredValue(
  db: Queryable,
  where: { jobId: string; taskId?: string | undefined; field: PayloadField },
): Promise<StoredValueRow | null> {
  if (where.taskId === undefined) {
    const result = await db.query<StoredValueRow>({
      name: 'cm_find_job_result_value',
      text: 'SELECT result AS value, result_ref AS ref, status FROM coremachine.jobs WHERE job_id = $1',
      values: [where.jobId],
    });
    return result.rows[0] ?? null;
  }
  const result = await db.query<StoredValueRow>({
    name: where.field === 'result' ? 'cm_find_task_result_value' : 'cm_find_task_parameters_value',
    text:
      where.field === 'result'
        ? 'SELECT result AS value, result_ref AS ref, status FROM coremachine.tasks WHERE task_id = $1 AND job_id = $2'
        : 'SELECT parameters AS value, parameters_ref AS ref, status FROM coremachine.tasks WHERE task_id = $1 AND job_id = $2',
    values: [where.taskId, where.jobId],
  });
  return result.rows[0] ?? null;
}

/**
 * The blobs the rows of these jobs reference: what deleting the jobs (retention, DELETE) must
 * delete from the store once the rows are gone. Read in the deleting transaction, before the rows go.
 */
export async function payloadKeysOfJobs(db: Queryable, jobIds: readonly string[]): Promise<string[]> {
  if (jobIds.length === 0) return [];
  const result = await db.query<{ key: string }>({
    name: 'cm_payload_keys_of_jobs',
    text: `SELECT result_ref->>'key' AS key FROM coremachine.jobs WHERE job_id = ANY($1::text[]) AND result_ref IS NOT NULL
           UNION ALL
           SELECT ref->>'key' FROM coremachine.tasks t, LATERAL (VALUES (t.result_ref), (t.parameters_ref)) AS r(ref)
            WHERE t.job_id = ANY($1::text[]) AND (t.result_ref IS NOT NULL OR t.parameters_ref IS NOT NULL) AND ref IS NOT NULL`,
    values: [[...jobIds]],
  });
  return result.rows.map((row) => row.key);
}

/** Of these blobs (named by payloadKey), the ones some row still references. */
export async function referencedPayloadKeys(db: Queryable, blobs: ReadonlyArray<PayloadOwner & { key: string }>): Promise<Set<string>> {
  if (blobs.length === 0) return new Set();
  const result = await db.query<{ key: string }>({
    name: 'cm_referenced_payload_keys',
    text: `SELECT b.key FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS b(key, job_id, owner, field)
            WHERE (b.owner = 'job' AND EXISTS (SELECT 1 FROM coremachine.jobs j WHERE j.job_id = b.job_id AND j.result_ref->>'key' = b.key))
               OR (b.owner <> 'job' AND EXISTS (SELECT 1 FROM coremachine.tasks t WHERE t.task_id = b.owner AND t.job_id = b.job_id
                     AND (CASE b.field WHEN 'result' THEN t.result_ref ELSE t.parameters_ref END)->>'key' = b.key))`,
    values: [
      textArray(blobs.map((b) => b.key)),
      textArray(blobs.map((b) => b.jobId)),
      textArray(blobs.map((b) => b.owner)),
      textArray(blobs.map((b) => b.field)),
    ],
  });
  return new Set(result.rows.map((row) => row.key));
}

/** Where the last orphan sweep left off in the store's listing (null: at the start). */
export async function readPayloadSweepCursor(db: Queryable): Promise<string | null> {
  const result = await db.query<{ continuation: string | null }>({
    name: 'cm_read_payload_sweep_cursor',
    text: 'SELECT continuation FROM coremachine.payload_sweep',
  });
  return result.rows[0]?.continuation ?? null;
}

/** Moves the cursor on from `from` (compare-and-set: two sweeps that read the same page move it once). */
export async function advancePayloadSweepCursor(db: Queryable, from: string | null, to: string | null): Promise<boolean> {
  const result = await db.query({
    name: 'cm_advance_payload_sweep_cursor',
    text: 'UPDATE coremachine.payload_sweep SET continuation = $2, swept_at = now() WHERE continuation IS NOT DISTINCT FROM $1',
    values: [from, to],
  });
  return (result.rowCount ?? 0) > 0;
}
