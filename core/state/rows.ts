import type { ErrorShape, JobRecord, JobStatus, StageProgress, StageStatus, TaskRecord, TaskStatus } from '../../models';

/** Row shapes as pg returns them, and their mapping to the model records. */
export interface JobRow {
  job_id: string;
  job_type: string;
  status: JobStatus;
  stage: number;
  total_stages: number;
  parameters: unknown;
  idempotency_key: string | null;
  result: unknown;
  error: ErrorShape | null;
  created_at: Date;
  updated_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  timeout_seconds: number | null;
  deadline_at: Date | null;
  stage_deadline_at: Date | null;
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
  result: unknown;
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
    status: row.status,
    stage: row.stage,
    totalStages: row.total_stages,
    parameters: row.parameters,
    idempotencyKey: row.idempotency_key ?? null,
    result: row.result ?? null,
    error: row.error ?? null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    finishedAt: finishedNotBefore(row.started_at, row.finished_at),
    timeoutSeconds: row.timeout_seconds ?? null,
    deadline: row.deadline_at ?? null,
    stageDeadline: row.stage_deadline_at ?? null,
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
    parameters: row.parameters,
    result: row.result ?? null,
    error: row.error ?? null,
    attempt: row.attempt,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: finishedNotBefore(row.started_at, row.finished_at),
    limitKey: row.limit_key ?? null,
    leaseLosses: row.lease_losses ?? 0,
  };
}
