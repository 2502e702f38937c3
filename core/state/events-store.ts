import type { ErrorShape, EventRecord, RerunEventDetail } from '../../models';
import type { Queryable } from '../db/pool';

export type { EventRecord };

/** Events with afterId < id < beforeId, oldest first ('asc') or newest first ('desc'), at most limit. */
export async function listEvents(
  db: Queryable,
  jobId: string,
  page: { afterId: number; beforeId?: number | undefined; order: 'asc' | 'desc'; limit: number },
): Promise<EventRecord[]> {
  const result = await db.query<{
    id: string;
    job_id: string;
    entity: EventRecord['entity'];
    stage: number | null;
    task_id: string | null;
    from_status: string | null;
    to_status: string;
    attempt: number | null;
    error: ErrorShape | null;
    at: Date;
    detail: ({ signal?: unknown } & Partial<RerunEventDetail>) | null;
  }>({
    // One prepared statement per order; both are a range scan of events_job_idx (job_id, id) from either end.
    name: page.order === 'desc' ? 'cm_list_events_desc' : 'cm_list_events',
    text: `SELECT * FROM coremachine.events WHERE job_id = $1 AND id > $2 AND id < COALESCE($3::bigint, 9223372036854775807) ORDER BY id ${page.order === 'desc' ? 'DESC' : 'ASC'} LIMIT $4`,
    values: [jobId, page.afterId, page.beforeId ?? null, page.limit],
  });
  return result.rows.map((row) => ({
    id: Number(row.id),
    jobId: row.job_id,
    entity: row.entity,
    stage: row.stage,
    taskId: row.task_id,
    from: row.from_status,
    to: row.to_status,
    attempt: row.attempt,
    error: row.error,
    at: row.at,
    // A delivered signal's event names it (migration 013 writes it into detail).
    ...(row.entity === 'signal' && typeof row.detail?.signal === 'string' ? { signal: row.detail.signal } : {}),
    // A re-run's event says what was chosen and what is recomputed (migration 024 writes it into detail).
    ...(row.entity === 'rerun' && row.detail ? { rerun: row.detail as RerunEventDetail } : {}),
  }));
}
