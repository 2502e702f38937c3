import { ENDED_JOB_STATUSES, FINAL_JOB_STATUSES, JOB_STATUSES, type ErrorShape, type JobStatus, type ListJobsQuery } from '../../models';
import type { Queryable } from '../db/pool';
import type { PayloadRef } from '../payloads/payload-store';
import type { JobRow } from './rows';
import { assertJobTransition } from './transitions';
import { selectJobPage } from './job-page';

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

/** GET jobs: a page of jobs newest first (core/state/job-page.ts reads it). */
export async function listJobs(db: Queryable, query: ListJobsQuery): Promise<{ rows: JobRow[]; nextCursor: string | null }> {
  return selectJobPage<JobRow>(
    db,
    'j.*',
    {
      statuses: query.status === undefined ? undefined : [query.status],
      jobType: query.jobType,
      label: query.label,
      createdBy: query.createdBy,
      namePrefix: query.name,
    },
    { cursor: query.cursor, limit: query.limit },
  );
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
