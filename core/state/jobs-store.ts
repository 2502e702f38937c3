import { ENDED_JOB_STATUSES, type ErrorShape, type JobStatus, type ListJobsQuery } from '../../models';
import type { Queryable } from '../db/pool';
import { ValidationError } from '../errors';
import type { JobRow } from './rows';
import { assertJobTransition } from './transitions';

export async function insertJob(
  db: Queryable,
  job: {
    jobId: string;
    jobType: string;
    totalStages: number;
    parameters: unknown;
    traceparent?: string | undefined;
    idempotencyKey?: string | undefined;
    /** The job's deadline runs from submission: created_at + this (see 012_deadlines.sql). */
    timeoutSeconds?: number | undefined;
  },
): Promise<{ row: JobRow; created: boolean }> {
  const inserted = await db.query<JobRow>({
    name: 'cm_insert_job',
    text: `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters, traceparent, idempotency_key, timeout_seconds, deadline_at)
           VALUES ($1, $2, 'QUEUED', 1, $3, $4, $5, $6, $7::int, now() + make_interval(secs => $7::int))
           ON CONFLICT (job_id) DO NOTHING RETURNING *`,
    values: [
      job.jobId,
      job.jobType,
      job.totalStages,
      JSON.stringify(job.parameters),
      job.traceparent ?? null,
      job.idempotencyKey ?? null,
      job.timeoutSeconds ?? null,
    ],
  });
  if (inserted.rows[0]) return { row: inserted.rows[0], created: true };
  // Same id means same type and canonical parameters: this is the job that was submitted before.
  const existing = await findJob(db, job.jobId);
  if (!existing) throw new Error(`job ${job.jobId} conflicted on insert but cannot be read`);
  return { row: existing, created: false };
}

export async function findJob(db: Queryable, jobId: string, forUpdate = false): Promise<JobRow | null> {
  const result = await db.query<JobRow>({
    name: forUpdate ? 'cm_find_job_for_update' : 'cm_find_job',
    text: `SELECT * FROM coremachine.jobs WHERE job_id = $1${forUpdate ? ' FOR UPDATE' : ''}`,
    values: [jobId],
  });
  return result.rows[0] ?? null;
}

/**
 * Locks jobs in id order. Every transaction that changes a job and its tasks takes its locks in
 * one order, job → tasks (by id) → stage, so no two of them can deadlock.
 */
export async function lockJobs(db: Queryable, jobIds: readonly string[]): Promise<void> {
  if (jobIds.length === 0) return;
  await db.query({
    name: 'cm_lock_jobs',
    text: 'SELECT job_id FROM coremachine.jobs WHERE job_id = ANY($1::text[]) ORDER BY job_id FOR UPDATE',
    values: [[...new Set(jobIds)]],
  });
}

export interface JobChange {
  /** The stage the job must be at for the change to apply. */
  atStage?: number;
  /** Moves the job to this stage. */
  toStage?: number;
  result?: unknown;
  error?: ErrorShape | null;
}

/**
 * Compare-and-set: applies only if the job is still `from` (and at `atStage`). Returns the new row,
 * or null when another writer got there first. A change the table forbids raises before any SQL.
 */
export async function transitionJob(db: Queryable, jobId: string, from: JobStatus, to: JobStatus, change: JobChange = {}): Promise<JobRow | null> {
  assertJobTransition(jobId, from, to);
  const result = await db.query<JobRow>({
    name: 'cm_transition_job',
    text: `UPDATE coremachine.jobs SET
             status = $3,
             stage = COALESCE($5::int, stage),
             -- A stage deadline belongs to the stage it was set for: moving to another stage drops it.
             stage_deadline_at = CASE WHEN $5::int IS NOT NULL AND $5::int <> stage THEN NULL ELSE stage_deadline_at END,
             result = CASE WHEN $6 THEN $7::jsonb ELSE result END,
             error = CASE WHEN $8 THEN $9::jsonb ELSE error END,
             started_at = CASE WHEN $3 = 'PROCESSING' THEN COALESCE(started_at, now()) ELSE started_at END,
             finished_at = CASE WHEN $10 THEN GREATEST(now(), started_at) ELSE NULL END,
             updated_at = now()
           WHERE job_id = $1 AND status = $2 AND ($4::int IS NULL OR stage = $4::int)
           RETURNING *`,
    values: [
      jobId,
      from,
      to,
      change.atStage ?? null,
      change.toStage ?? null,
      'result' in change,
      'result' in change ? JSON.stringify(change.result ?? null) : null,
      'error' in change,
      'error' in change && change.error ? JSON.stringify(change.error) : null,
      ENDED_JOB_STATUSES.includes(to),
    ],
  });
  return result.rows[0] ?? null;
}

/**
 * Newest first, keyset-paged on (created_at, job_id). The cursor keeps created_at to the
 * microsecond, as PostgreSQL stores it: a JavaScript Date has milliseconds only, and jobs created
 * within one millisecond would be skipped between pages.
 */
export async function listJobs(db: Queryable, query: ListJobsQuery): Promise<{ rows: JobRow[]; nextCursor: string | null }> {
  const cursor = query.cursor ? decodeCursor(query.cursor) : null;
  const result = await db.query<JobRow & { cursor_at: string }>(
    `SELECT *, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at FROM coremachine.jobs
      WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR job_type = $2)
        AND ($3::timestamptz IS NULL OR (created_at, job_id) < ($3::timestamptz, $4::text))
      ORDER BY created_at DESC, job_id DESC
      LIMIT $5`,
    [query.status ?? null, query.jobType ?? null, cursor?.createdAt ?? null, cursor?.jobId ?? null, query.limit + 1],
  );
  const page = result.rows.slice(0, query.limit);
  const last = page[page.length - 1];
  const nextCursor = result.rows.length > query.limit && last ? encodeCursor(last.cursor_at, last.job_id) : null;
  return { rows: page.map(({ cursor_at: _cursor, ...row }) => row), nextCursor };
}

/** base64url of JSON `[createdAt, jobId]`, createdAt an ISO time with microseconds (models/api.ts checks the shape). */
function encodeCursor(createdAt: string, jobId: string): string {
  return Buffer.from(JSON.stringify([createdAt, jobId])).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: string; jobId: string } {
  const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw new ValidationError('cursor is not one this API returned', [{ path: ['cursor'], message: 'invalid cursor' }]);
  }
  return { createdAt: parsed[0], jobId: parsed[1] };
}

/** Just the status, for long-polls: one small row per poll, not the job's parameters and result. */
export async function findJobStatus(db: Queryable, jobId: string): Promise<JobStatus | null> {
  const result = await db.query<{ status: JobStatus }>({
    name: 'cm_find_job_status',
    text: 'SELECT status FROM coremachine.jobs WHERE job_id = $1',
    values: [jobId],
  });
  return result.rows[0]?.status ?? null;
}
