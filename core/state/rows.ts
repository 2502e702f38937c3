import {
  PRIORITIES,
  type ErrorShape,
  type JobRecord,
  type JobStatus,
  type StageProgress,
  type StageStatus,
  type TaskRecord,
  type TaskStatus,
} from '../../models';
import { payloadLink } from '../../models/payload-link';
import type { PayloadRef } from '../payloads/payload-store';

/** Row shapes as pg returns them, and their mapping to the model records. */
export interface JobRow {
  job_id: string;
  job_type: string;
  /** The version of its job type the job runs (migration 018). */
  job_version: number;
  status: JobStatus;
  stage: number;
  total_stages: number;
  parameters: unknown;
  idempotency_key: string | null;
  result: unknown;
  /** The finalize result when it is in the payload store (migration 019); `result` is NULL then. */
  result_ref?: PayloadRef | null;
  error: ErrorShape | null;
  created_at: Date;
  updated_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  timeout_seconds: number | null;
  deadline_at: Date | null;
  stage_deadline_at: Date | null;
  /** Who and what (migration 020): display name, creator, labels ('{}' when none). */
  name: string | null;
  created_by: string | null;
  labels: Record<string, string>;
  /** Fair share (migration 023): all null when the job is not in the scheme. */
  fair_rank: number | null;
  fair_key: string | null;
  fair_weight: number | null;
  /** Targeted re-runs the job has had (migration 024): the tag that makes a re-run's messages new. */
  reruns: number;
}

export interface StageRow {
  job_id: string;
  stage: number;
  name: string;
  status: StageStatus;
  total: number;
  completed: number;
  failed: number;
  max_failures: number;
  /** Tasks are still being created in chunks; `total` is `created` + 1 until the last one commits. */
  creating: boolean;
  created: number;
  fan_out_digest: string | null;
  /** The signal a waiting stage waits for (migration 013); null for a stage of tasks. */
  signal?: string | null;
  started_at: Date | null;
  finished_at: Date | null;
}

export interface TaskRow {
  task_id: string;
  job_id: string;
  stage: number;
  task_index: number;
  task_type: string;
  status: TaskStatus;
  parameters: unknown;
  /** Parameters (the fan-out's spec) in the payload store (migration 019); `parameters` is NULL then. */
  parameters_ref: PayloadRef | null;
  result: unknown;
  /** The result in the payload store; `result` is NULL then. */
  result_ref: PayloadRef | null;
  error: ErrorShape | null;
  attempt: number;
  claim_id: string | null;
  lease_expires_at: Date | null;
  retry_at: Date | null;
  remote: boolean;
  worker_id: string | null;
  /** The slot key of a task type with global limits (migration 011); null without limits. */
  limit_key: string | null;
  /** Leases lost by a host that died or stopped renewing (migration 017): not attempts. */
  lease_losses: number;
  /** Only from a listing, and only when the task logged (migration 021): lines recorded, lines its attempts dropped. */
  log_lines?: number | null;
  logs_dropped?: number | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

/**
 * Rows written before finished_at was kept at or after started_at (see cancelJob) can hold the
 * reverse; a reader must never compute a negative duration from them.
 */
function finishedNotBefore(started: Date | null, finished: Date | null): Date | null {
  return started && finished && finished < started ? started : finished;
}

export function toJobRecord(row: JobRow): JobRecord {
  return {
    jobId: row.job_id,
    jobType: row.job_type,
    version: row.job_version,
    status: row.status,
    stage: row.stage,
    totalStages: row.total_stages,
    parameters: row.parameters,
    idempotencyKey: row.idempotency_key ?? null,
    result: row.result ?? null,
    ...(row.result_ref ? { resultRef: payloadLink(row.result_ref, { jobId: row.job_id, field: 'result' }) } : {}),
    error: row.error ?? null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    finishedAt: finishedNotBefore(row.started_at, row.finished_at),
    timeoutSeconds: row.timeout_seconds ?? null,
    deadline: row.deadline_at ?? null,
    stageDeadline: row.stage_deadline_at ?? null,
    name: row.name ?? null,
    createdBy: row.created_by ?? null,
    labels: row.labels ?? {},
    priority: row.fair_rank === null || row.fair_rank === undefined ? null : (PRIORITIES[row.fair_rank] ?? null),
    fairnessKey: row.fair_key || null,
    fairnessWeight: row.fair_weight ?? null,
  };
}

export function toStageProgress(row: StageRow): StageProgress {
  return {
    stage: row.stage,
    name: row.name,
    status: row.status,
    // While chunks are still being created the stored total holds one place open (see 008).
    total: row.creating ? row.created : row.total,
    completed: row.completed,
    failed: row.failed,
    startedAt: row.started_at,
    finishedAt: finishedNotBefore(row.started_at, row.finished_at),
    ...(row.signal ? { signal: row.signal } : {}),
  };
}

export function toTaskRecord(row: TaskRow): TaskRecord {
  return {
    taskId: row.task_id,
    jobId: row.job_id,
    stage: row.stage,
    taskIndex: row.task_index,
    taskType: row.task_type,
    status: row.status,
    parameters: row.parameters ?? null,
    ...(row.parameters_ref ? { parametersRef: payloadLink(row.parameters_ref, { jobId: row.job_id, taskId: row.task_id, field: 'parameters' }) } : {}),
    result: row.result ?? null,
    ...(row.result_ref ? { resultRef: payloadLink(row.result_ref, { jobId: row.job_id, taskId: row.task_id, field: 'result' }) } : {}),
    error: row.error ?? null,
    attempt: row.attempt,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: finishedNotBefore(row.started_at, row.finished_at),
    limitKey: row.limit_key ?? null,
    leaseLosses: row.lease_losses ?? 0,
    ...(row.log_lines === null || row.log_lines === undefined ? {} : { logs: { lines: row.log_lines, dropped: row.logs_dropped ?? 0 } }),
  };
}
