import type pg from 'pg';
import { z } from 'zod';
import { TaskFailure, type AnyTaskDefinition, type ErrorShape } from '../../models';
import { MAX_NAME_LENGTH, safeText } from '../../models/http-input';
import { withTransaction } from '../db/pool';
import { errorToShape, LeaseLostError, TaskNotFoundError, ValidationError, describeZodError } from '../errors';
import { extendLease } from '../state/tasks-store';
import type { AdvanceDeps } from './stage-advance';
import { commitOutcomes, DEFAULT_LEASE_SECONDS, nextAttemptAt } from './task-batch';
import type { Outbox } from './outbox';

/**
 * Remote workers claim tasks over HTTP instead of receiving queue messages: the same leases,
 * claim fencing, retries and stage counting as queue tasks, through the same settle path.
 */
export const ClaimRequest = z.object({
  workerId: safeText(MAX_NAME_LENGTH),
  taskTypes: z.array(safeText(MAX_NAME_LENGTH)).min(1).max(50),
  maxTasks: z.number().int().min(1).max(100).default(1),
  leaseSeconds: z.number().int().min(5).max(3600).optional(),
});
export const HeartbeatRequest = z.object({ claimId: z.uuid(), leaseSeconds: z.number().int().min(5).max(3600).optional() });
export const CompleteRequest = z.object({ claimId: z.uuid(), result: z.unknown() });
/**
 * A failure report is copied into the task, the job's error and the event trail: its type and
 * message are bounded here (400 beyond), not truncated, so the worker learns its report was refused.
 */
export const MAX_FAILURE_TYPE_LENGTH = MAX_NAME_LENGTH;
export const MAX_FAILURE_MESSAGE_LENGTH = 8 * 1024;

/**
 * The longest a retry can be put off when the task type's retry policy sets no maxDelayMs. A
 * worker's retryAfterMs beyond it would park the task (and keep its job PROCESSING) for longer
 * than any operator waits; a day still covers a rate limit that resets daily.
 */
export const MAX_RETRY_DELAY_MS = 24 * 60 * 60 * 1000;

export const FailRequest = z.object({
  claimId: z.uuid(),
  error: z.object({ type: safeText(MAX_FAILURE_TYPE_LENGTH).default('RemoteWorkerError'), message: safeText(MAX_FAILURE_MESSAGE_LENGTH) }),
  retryable: z.boolean().default(true),
  // Any safe integer is accepted and then capped (cappedRetryDelayMs): the worker asked for "later".
  retryAfterMs: z.number().int().min(0).optional(),
});

/** A worker-requested delay, capped by the task type's retry.maxDelayMs and by MAX_RETRY_DELAY_MS. */
export function cappedRetryDelayMs(definition: AnyTaskDefinition | undefined, requestedMs: number): number {
  return Math.min(requestedMs, definition?.retry?.maxDelayMs ?? MAX_RETRY_DELAY_MS, MAX_RETRY_DELAY_MS);
}

export interface RemoteTask {
  taskId: string;
  claimId: string;
  jobId: string;
  stage: number;
  taskIndex: number;
  taskType: string;
  attempt: number;
  parameters: unknown;
  leaseExpiresAt: Date;
}

export function parseRequest<T extends z.ZodType>(schema: T, body: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new ValidationError(`invalid ${what}: ${describeZodError(parsed.error)}`, parsed.error.issues);
  return parsed.data;
}

export class RemoteWorkers {
  constructor(
    private readonly pool: pg.Pool,
    private readonly deps: AdvanceDeps,
    private readonly outbox: Outbox,
  ) {}

  /** Claims up to maxTasks QUEUED remote tasks of the given types, oldest first, each with a lease. */
  async claim(body: unknown): Promise<RemoteTask[]> {
    const request = parseRequest(ClaimRequest, body, 'claim request');
    const leases = request.taskTypes.map((type) => request.leaseSeconds ?? (this.deps.registry.hasTask(type) ? this.deps.registry.task(type).leaseSeconds : undefined) ?? DEFAULT_LEASE_SECONDS);
    const result = await this.pool.query<{ task_id: string; claim_id: string; job_id: string; stage: number; task_index: number; task_type: string; attempt: number; parameters: unknown; lease_expires_at: Date }>({
      name: 'cm_claim_remote_tasks',
      text: `WITH candidates AS (
               SELECT t.task_id, l.lease FROM coremachine.tasks t
                 JOIN coremachine.jobs j ON j.job_id = t.job_id AND j.status = 'PROCESSING' AND j.stage = t.stage
                 JOIN unnest($1::text[], $4::float8[]) AS l(task_type, lease) ON l.task_type = t.task_type
                WHERE t.remote AND t.status = 'QUEUED' AND (t.retry_at IS NULL OR t.retry_at <= now())
                ORDER BY t.created_at, t.task_index LIMIT $2 FOR UPDATE OF t SKIP LOCKED)
             UPDATE coremachine.tasks t SET status = 'PROCESSING', attempt = t.attempt + 1, claim_id = gen_random_uuid(),
                    lease_expires_at = now() + make_interval(secs => c.lease), started_at = now(), worker_id = $3
               FROM candidates c WHERE t.task_id = c.task_id
             RETURNING t.task_id, t.claim_id, t.job_id, t.stage, t.task_index, t.task_type, t.attempt, t.parameters, t.lease_expires_at`,
      values: [request.taskTypes, request.maxTasks, request.workerId, leases],
    });
    if (result.rows.length > 0) this.deps.logger.info('remote tasks claimed', { workerId: request.workerId, tasks: result.rows.length });
    return result.rows.map((row) => ({
      taskId: row.task_id,
      claimId: row.claim_id,
      jobId: row.job_id,
      stage: row.stage,
      taskIndex: row.task_index,
      taskType: row.task_type,
      attempt: row.attempt,
      parameters: row.parameters,
      leaseExpiresAt: row.lease_expires_at,
    }));
  }

  async heartbeat(taskId: string, body: unknown): Promise<{ leaseExpiresAt: Date }> {
    const request = parseRequest(HeartbeatRequest, body, 'heartbeat');
    const type = (await this.task(taskId)).task_type;
    const seconds = request.leaseSeconds ?? this.deps.registry.task(type).leaseSeconds ?? DEFAULT_LEASE_SECONDS;
    if (!(await extendLease(this.pool, taskId, request.claimId, seconds))) throw new LeaseLostError(taskId);
    return { leaseExpiresAt: new Date(Date.now() + seconds * 1000) };
  }

  async complete(taskId: string, body: unknown): Promise<void> {
    const request = parseRequest(CompleteRequest, body, 'completion');
    const task = await this.task(taskId);
    const schema = this.deps.registry.task(task.task_type).result;
    const result = schema ? parseRequest(schema, request.result, `result of task ${taskId}`) : request.result;
    await this.settle({ taskId, jobId: task.job_id, claimId: request.claimId, result: result ?? null });
  }

  async fail(taskId: string, body: unknown): Promise<{ retryAt: Date | null }> {
    const request = parseRequest(FailRequest, body, 'failure report');
    const row = await this.task(taskId);
    const definition = this.deps.registry.hasTask(row.task_type) ? this.deps.registry.task(row.task_type) : undefined;
    const retryAfterMs = request.retryAfterMs === undefined ? undefined : cappedRetryDelayMs(definition, request.retryAfterMs);
    const failure = new TaskFailure(request.error.message, { nonRetryable: !request.retryable, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
    const retryAt = nextAttemptAt(definition, row.attempt, failure);
    const error: ErrorShape = { ...errorToShape(failure, { stage: row.stage, taskId }), type: request.error.type };
    await this.settle({ taskId, jobId: row.job_id, claimId: request.claimId, error, ...(retryAt ? { retryAt } : {}) });
    return { retryAt: retryAt ?? null };
  }

  /** Admin: gives a stuck claim up now instead of waiting for its lease; the task is claimable again. */
  async release(taskId: string): Promise<void> {
    const released = await this.pool.query(
      `UPDATE coremachine.tasks SET status = 'QUEUED', claim_id = NULL, lease_expires_at = NULL, worker_id = NULL,
              error = jsonb_build_object('type', 'Released', 'message', 'claim released by an operator', 'taskId', task_id, 'stage', stage)
        WHERE task_id = $1 AND status = 'PROCESSING' AND remote`,
      [taskId],
    );
    if (released.rowCount === 0) {
      // Same answers as complete and heartbeat: unknown task 404, no current claim 409.
      await this.task(taskId);
      throw new LeaseLostError(taskId);
    }
    this.deps.logger.warn('remote task claim released by an operator', { taskId });
  }

  private async settle(outcome: Parameters<typeof commitOutcomes>[2][number]): Promise<void> {
    const recorded = await withTransaction(this.pool, async (client) => {
      const committed = await commitOutcomes(client, this.deps, [outcome]);
      if (!committed.settled.has(outcome.taskId)) throw new LeaseLostError(outcome.taskId);
      return this.outbox.record(client, committed.intents);
    });
    await this.outbox.dispatch(recorded);
  }

  private async task(taskId: string): Promise<{ task_type: string; job_id: string; attempt: number; stage: number }> {
    const result = await this.pool.query<{ task_type: string; job_id: string; attempt: number; stage: number }>(
      'SELECT task_type, job_id, attempt, stage FROM coremachine.tasks WHERE task_id = $1',
      [taskId],
    );
    const row = result.rows[0];
    if (!row) throw new TaskNotFoundError(taskId);
    return row;
  }
}
