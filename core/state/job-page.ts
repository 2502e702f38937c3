import type { Queryable } from '../db/pool';
import { ValidationError } from '../errors';

/** What a page of jobs can be filtered by: the jobs list's query and a bulk operation's filter. */
export interface JobPageFilter {
  /** One status, or any of several. */
  statuses?: readonly string[] | undefined;
  jobType?: string | undefined;
  /** Every label must be on the job. */
  label?: Readonly<Record<string, string>> | undefined;
  createdBy?: string | undefined;
  /** A prefix of the job's name (case-sensitive). */
  namePrefix?: string | undefined;
  /** Created at or after this instant. */
  createdAfter?: string | undefined;
  /** Created before this instant. */
  createdBefore?: string | undefined;
}

/**
 * One page of jobs, newest first, keyset-paged on (created_at, job_id): the jobs list
 * (core/state/jobs-store.ts) and the jobs a bulk operation takes (core/state/bulk-store.ts) read the
 * same way. The cursor keeps created_at to the microsecond, as PostgreSQL stores it: a JavaScript
 * Date has milliseconds only, and jobs created within one millisecond would be skipped between pages.
 *
 * With label filters the first one drives: its jobs are read from job_labels' index newest first
 * (020_job_labels.sql) and the other filters checked on each (every label on the job's own column;
 * the driving one again costs nothing), so a page costs about a page of that label's jobs, never a
 * scan of the table. Without, jobs are read in order through the index a filter has (status,
 * job_type, created_by), or filtered by a name prefix through its own.
 *
 * Unnamed on purpose: PostgreSQL plans an unnamed statement with its parameter values, so a filter
 * not given folds away instead of hiding an index from a generic plan. `columns` is the select list
 * over `j` (coremachine.jobs).
 */
export async function selectJobPage<Row extends { job_id: string }>(
  db: Queryable,
  columns: string,
  filter: JobPageFilter,
  page: { cursor?: string | undefined; limit: number },
): Promise<{ rows: Row[]; nextCursor: string | null }> {
  const cursor = page.cursor ? decodeCursor(page.cursor) : null;
  const labels = Object.entries(filter.label ?? {});
  const driving = labels[0];
  const statuses = filter.statuses ?? [];
  const values: unknown[] = [
    // One status compares with `=` (the plan the list always had); several with ANY.
    statuses.length === 0 ? null : statuses.length === 1 ? statuses[0] : statuses,
    filter.jobType ?? null,
    cursor?.createdAt ?? null,
    cursor?.jobId ?? null,
    page.limit + 1,
    labels.length > 0 ? JSON.stringify(filter.label) : null,
    filter.createdBy ?? null,
    filter.namePrefix === undefined ? null : `${likeLiteral(filter.namePrefix)}%`,
    filter.createdAfter ?? null,
    filter.createdBefore ?? null,
  ];
  const status = statuses.length > 1 ? `($1::text[] IS NULL OR j.status = ANY($1::text[]))` : `($1::text IS NULL OR j.status = $1)`;
  const filters = `${status} AND ($2::text IS NULL OR j.job_type = $2)
        AND ($6::jsonb IS NULL OR j.labels @> $6::jsonb)
        AND ($7::text IS NULL OR j.created_by = $7)
        AND ($8::text IS NULL OR j.name LIKE $8)
        AND ($9::timestamptz IS NULL OR j.created_at >= $9::timestamptz) AND ($10::timestamptz IS NULL OR j.created_at < $10::timestamptz)`;
  const cursorAt = `to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at`;
  const result = driving
    ? await db.query<Row & { cursor_at: string }>(
        `SELECT ${columns}, ${cursorAt} FROM coremachine.job_labels l JOIN coremachine.jobs j ON j.job_id = l.job_id
          WHERE l.key = $11 AND l.value = $12
            AND ($3::timestamptz IS NULL OR (l.created_at, l.job_id) < ($3::timestamptz, $4::text))
            AND ${filters}
          ORDER BY l.created_at DESC, l.job_id DESC
          LIMIT $5`,
        [...values, driving[0], driving[1]],
      )
    : await db.query<Row & { cursor_at: string }>(
        `SELECT ${columns}, ${cursorAt} FROM coremachine.jobs j
          WHERE ($3::timestamptz IS NULL OR (j.created_at, j.job_id) < ($3::timestamptz, $4::text))
            AND ${filters}
          ORDER BY j.created_at DESC, j.job_id DESC
          LIMIT $5`,
        values,
      );
  const rows = result.rows.slice(0, page.limit);
  const last = rows[rows.length - 1];
  const nextCursor = result.rows.length > page.limit && last ? encodeCursor(last.cursor_at, last.job_id) : null;
  return { rows: rows.map(({ cursor_at: _cursor, ...row }) => row as unknown as Row), nextCursor };
}

/** The text as a LIKE pattern that matches only itself: `%`, `_` and LIKE's escape character, the backslash, escaped. */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}

/** base64url of JSON `[createdAt, jobId]`, createdAt an ISO time with microseconds (models/api.ts checks the shape). */
export function encodeCursor(createdAt: string, jobId: string): string {
  return Buffer.from(JSON.stringify([createdAt, jobId])).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: string; jobId: string } {
  const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw new ValidationError('cursor is not one this API returned', [{ path: ['cursor'], message: 'invalid cursor' }]);
  }
  return { createdAt: parsed[0], jobId: parsed[1] };
}
