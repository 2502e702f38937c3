import type { BulkFilter, JobStatus } from '../../models';
import type { Queryable } from '../db/pool';
import { decodeCursor, encodeCursor } from './jobs-store';

/**
 * The jobs a bulk operation takes (core/engine/bulk-jobs.ts): a filter's jobs, newest first, a
 * page at a time, in the jobs list's order and with its cursor, so each filter is read through the
 * index the list uses for it (020_job_labels.sql, 001_init.sql). Nothing is locked here: each job is
 * then locked by the one-job action that changes it, which re-checks its status.
 */
export async function selectBulkJobs(
  db: Queryable,
  filter: BulkFilter,
  page: { cursor?: string | undefined; limit: number },
): Promise<{ jobs: Array<{ job_id: string; status: JobStatus }>; nextCursor: string | null }> {
  const cursor = page.cursor ? decodeCursor(page.cursor) : null;
  const labels = Object.entries(filter.label ?? {});
  const driving = labels[0];
  const values: unknown[] = [
    filter.status ?? null,
    filter.jobType ?? null,
    cursor?.createdAt ?? null,
    cursor?.jobId ?? null,
    page.limit + 1,
    labels.length > 0 ? JSON.stringify(filter.label) : null,
    filter.createdAfter ?? null,
    filter.createdBefore ?? null,
  ];
  const filters = `($1::text[] IS NULL OR j.status = ANY($1::text[])) AND ($2::text IS NULL OR j.job_type = $2)
        AND ($6::jsonb IS NULL OR j.labels @> $6::jsonb)
        AND ($7::timestamptz IS NULL OR j.created_at >= $7::timestamptz) AND ($8::timestamptz IS NULL OR j.created_at < $8::timestamptz)`;
  const cursorAt = `to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at`;
  // Unnamed, as listJobs: planned with its values, so a filter not given folds away.
  const result = driving
    ? await db.query<{ job_id: string; status: JobStatus; cursor_at: string }>(
        `SELECT j.job_id, j.status, ${cursorAt} FROM coremachine.job_labels l JOIN coremachine.jobs j ON j.job_id = l.job_id
          WHERE l.key = $9 AND l.value = $10
            AND ($3::timestamptz IS NULL OR (l.created_at, l.job_id) < ($3::timestamptz, $4::text))
            AND ${filters}
          ORDER BY l.created_at DESC, l.job_id DESC
          LIMIT $5`,
        [...values, driving[0], driving[1]],
      )
    : await db.query<{ job_id: string; status: JobStatus; cursor_at: string }>(
        `SELECT j.job_id, j.status, ${cursorAt} FROM coremachine.jobs j
          WHERE ($3::timestamptz IS NULL OR (j.created_at, j.job_id) < ($3::timestamptz, $4::text))
            AND ${filters}
          ORDER BY j.created_at DESC, j.job_id DESC
          LIMIT $5`,
        values,
      );
  const rows = result.rows.slice(0, page.limit);
  const last = rows[rows.length - 1];
  const nextCursor = result.rows.length > page.limit && last ? encodeCursor(last.cursor_at, last.job_id) : null;
  return { jobs: rows.map((row) => ({ job_id: row.job_id, status: row.status })), nextCursor };
}
