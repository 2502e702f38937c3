import type { ErrorShape } from '../../models';
import type { Queryable } from '../db/pool';

/** One row of the audit trail (written by triggers in migration 002). */
export interface EventRecord {
  id: number;
  jobId: string;
  entity: 'job' | 'stage' | 'task';
  stage: number | null;
  taskId: string | null;
  from: string | null;
  to: string;
  attempt: number | null;
  error: ErrorShape | null;
  at: Date;
}

export async function listEvents(db: Queryable, jobId: string, afterId: number, limit: number): Promise<EventRecord[]> {
  const result = await db.query<{
    id: string; job_id: string; entity: EventRecord['entity']; stage: number | null; task_id: string | null;
    from_status: string | null; to_status: string; attempt: number | null; error: ErrorShape | null; at: Date;
  }>({
    name: 'cm_list_events',
    text: 'SELECT * FROM coremachine.events WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3',
    values: [jobId, afterId, limit],
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
  }));
}
