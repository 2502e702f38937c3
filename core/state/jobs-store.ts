import { ENDED_JOB_STATUSES, FINAL_JOB_STATUSES, JOB_STATUSES, type ErrorShape, type JobStatus, type ListJobsQuery } from '../../models';
import type { Queryable } from '../db/pool';
import { ValidationError } from '../errors';
import type { PayloadRef } from '../payloads/payload-store';
import type { JobRow } from './rows';
import { assertJobTransition } from './transitions';

export async function insertJob(
  db: Queryable,
  job: {
    jobId: string;
    jobType: string;
    /** The version of the job type it runs until it ends (migration 018). */
    jobVersion: number;
    totalStages: number;
    parameters: unknown;
    traceparent?: string | undefined;
    idempotencyKey?: string | undefined;
    /** The job's deadline runs from submission: created_at + this (see 012_deadlines.sql). */
    timeoutSeconds?: number | undefined;
    /** Who and what (migration 020), validated by the engine: kept as first submitted, never relabelled by a resubmission. */
    name?: string | undefined;
    createdBy?: string | undefined;
    labels?: Readonly<Record<string, string>> | undefined;
    /** Priority class, fairness key and weight (migration 023); undefined: not in the fair-share scheme. */
    fairShare?: { rank: number; key: string; weight: number } | undefined;
  },
): Promise<{ row: JobRow; created: boolean }> {
  const inserted = await db.query<JobRow>({
    name: 'cm_insert_job',
    text: `INSERT INTO coremachine.jobs (job_id, job_type, status, stage, total_stages, parameters, traceparent, idempotency_key, timeout_seconds, deadline_at, job_version, name, created_by, labels, fair_rank, fair_key, fair_weight)
           VALUES ($1, $2, 'QUEUED', 1, $3, $4, $5, $6, $7::int, now() + make_interval(secs => $7::int), $8, $9, $10, $11::jsonb, $12, $13, $14)
           ON CONFLICT (job_id) DO NOTHING RETURNING *`,
    values: [
      job.jobId,
      job.jobType,
      job.totalStages,
      JSON.stringify(job.parameters),
      job.traceparent ?? null,
      job.idempotencyKey ?? null,
      job.timeoutSeconds ?? null,
      job.jobVersion,
      job.name ?? null,
      job.createdBy ?? null,
      JSON.stringify(job.labels ?? {}),
      job.fairShare?.rank ?? null,
      job.fairShare?.key ?? null,
      job.fairShare?.weight ?? null,
    ],
  });
  if (inserted.rows[0]) {
    if (job.labels && Object.keys(job.labels).length > 0) await indexJobLabels(db, job.jobId);
    return { row: inserted.rows[0], created: true };
  }
  // Same id means same type and canonical parameters: this is the job that was submitted before.
  const existing = await findJob(db, job.jobId);
  if (!existing) throw new Error(`job ${job.jobId} conflicted on insert but cannot be read`);
  return { row: existing, created: false };
}

/**
 * A new job's labels into the table that finds jobs by label (migration 020), read from the row
 * itself: its created_at to the microsecond, which the foreign key compares (a JavaScript Date would
 * round it to the millisecond).
 */
async function indexJobLabels(db: Queryable, jobId: string): Promise<void> {
  await db.query({
    name: 'cm_index_job_labels',
    text: `INSERT INTO coremachine.job_labels (job_id, created_at, key, value)
           SELECT j.job_id, j.created_at, l.key, l.value FROM coremachine.jobs j, jsonb_each_text(j.labels) l WHERE j.job_id = $1`,
    values: [jobId],
  });
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
  /** The result as JSON already (instead of `result`): a large one is not serialised twice. */
  resultJson?: string;
  /** The result is in the payload store (migration 019): only this reference is recorded, `result` is NULL. */
  resultRef?: PayloadRef;
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
             result_ref = CASE WHEN $6 THEN $11::jsonb ELSE result_ref END,
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
      'result' in change || change.resultJson !== undefined || change.resultRef !== undefined,
      change.resultRef ? null : (change.resultJson ?? ('result' in change ? JSON.stringify(change.result ?? null) : null)),
      'error' in change,
      'error' in change && change.error ? JSON.stringify(change.error) : null,
      ENDED_JOB_STATUSES.includes(to),
      change.resultRef ? JSON.stringify(change.resultRef) : null,
    ],
  });
  return result.rows[0] ?? null;
}

/**
 * Newest first, keyset-paged on (created_at, job_id). The cursor keeps created_at to the
 * microsecond, as PostgreSQL stores it: a JavaScript Date has milliseconds only, and jobs created
 * within one millisecond would be skipped between pages.
 *
 * With label filters the first one drives: its jobs are read from job_labels' index newest first
 * (020_job_labels.sql) and the other filters checked on each, so a page costs about a page of that
 * label's jobs, never a scan of the table. Without, jobs are read in order through the index a
 * filter has (status, job_type, created_by), or filtered by a name prefix through its own.
 * Unnamed on purpose: PostgreSQL plans an unnamed statement with its parameter values, so a filter
 * not given folds away instead of hiding an index from a generic plan.
 */
export async function listJobs(db: Queryable, query: ListJobsQuery): Promise<{ rows: JobRow[]; nextCursor: string | null }> {
  const cursor = query.cursor ? decodeCursor(query.cursor) : null;
  const labels = Object.entries(query.label ?? {});
  const driving = labels[0];
  const values: unknown[] = [
    query.status ?? null,
    query.jobType ?? null,
    cursor?.createdAt ?? null,
    cursor?.jobId ?? null,
    query.limit + 1,
    // Every label is checked on the job's own column (the driving one again, which costs nothing).
    labels.length > 0 ? JSON.stringify(query.label) : null,
    query.createdBy ?? null,
    query.name === undefined ? null : `${likeLiteral(query.name)}%`,
  ];
  const filters = `($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.job_type = $2)
        AND ($6::jsonb IS NULL OR j.labels @> $6::jsonb)
        AND ($7::text IS NULL OR j.created_by = $7)
        AND ($8::text IS NULL OR j.name LIKE $8)`;
  const cursorAt = `to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at`;
  const result = driving
    ? await db.query<JobRow & { cursor_at: string }>(
        `SELECT j.*, ${cursorAt} FROM coremachine.job_labels l JOIN coremachine.jobs j ON j.job_id = l.job_id
          WHERE l.key = $9 AND l.value = $10
            AND ($3::timestamptz IS NULL OR (l.created_at, l.job_id) < ($3::timestamptz, $4::text))
            AND ${filters}
          ORDER BY l.created_at DESC, l.job_id DESC
          LIMIT $5`,
        [...values, driving[0], driving[1]],
      )
    : await db.query<JobRow & { cursor_at: string }>(
        `SELECT j.*, ${cursorAt} FROM coremachine.jobs j
          WHERE ($3::timestamptz IS NULL OR (j.created_at, j.job_id) < ($3::timestamptz, $4::text))
            AND ${filters}
          ORDER BY j.created_at DESC, j.job_id DESC
          LIMIT $5`,
        values,
      );
  const page = result.rows.slice(0, query.limit);
  const last = page[page.length - 1];
  const nextCursor = result.rows.length > query.limit && last ? encodeCursor(last.cursor_at, last.job_id) : null;
  return { rows: page.map(({ cursor_at: _cursor, ...row }) => row), nextCursor };
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

/** Just the status, for long-polls: one small row per poll, not the job's parameters and result. */
export async function findJobStatus(db: Queryable, jobId: string): Promise<JobStatus | null> {
  const result = await db.query<{ status: JobStatus }>({
    name: 'cm_find_job_status',
    text: 'SELECT status FROM coremachine.jobs WHERE job_id = $1',
    values: [jobId],
  });
  return result.rows[0]?.status ?? null;
}

/** What job events carry of their jobs (migration 020): name, creator and labels, read in the transaction that publishes them. */
export async function findJobIdentities(db: Queryable, jobIds: readonly string[]): Promise<Array<Pick<JobRow, 'job_id' | 'name' | 'created_by' | 'labels'>>> {
  if (jobIds.length === 0) return [];
  const result = await db.query<Pick<JobRow, 'job_id' | 'name' | 'created_by' | 'labels'>>({
    name: 'cm_find_job_identities',
    text: 'SELECT job_id, name, created_by, labels FROM coremachine.jobs WHERE job_id = ANY($1::text[])',
    values: [[...new Set(jobIds)]],
  });
  return result.rows;
}

const UNFINISHED_JOB_STATUSES = JOB_STATUSES.filter((status) => !FINAL_JOB_STATUSES.includes(status));

/**
 * How many jobs still run (or may be retried to run) each (job type, version): the versions a
 * deployment must keep registering. Active jobs go on by themselves; FAILED ones only if an
 * operator retries them, so they are counted apart.
 */
export async function unfinishedJobVersions(db: Queryable): Promise<Array<{ job_type: string; job_version: number; active: number; failed: number }>> {
  const result = await db.query<{ job_type: string; job_version: number; active: number; failed: number }>({
    name: 'cm_unfinished_job_versions',
    text: `SELECT job_type, job_version,
                  count(*) FILTER (WHERE status <> 'FAILED')::int AS active,
                  count(*) FILTER (WHERE status = 'FAILED')::int AS failed
             FROM coremachine.jobs WHERE status = ANY($1::text[])
            GROUP BY job_type, job_version ORDER BY job_type, job_version`,
    // Named, not negated: the (status, created_at) index then reads only unfinished jobs, however many have ended.
    values: [UNFINISHED_JOB_STATUSES],
  });
  return result.rows;
}
