import type pg from 'pg';
import { z } from 'zod';
import { leaseSecondsOf, TaskFailure, type ErrorShape } from '../../models';
import { MAX_NAME_LENGTH, safeText } from '../../models/http-input';
import { errorToShape, LeaseLostError, MAX_RECORDED_MESSAGE_LENGTH, TaskNotFoundError, parseOrThrow } from '../errors';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import { claimRemoteTasks, releaseRemoteClaim, type RemoteClaim } from '../state/remote-tasks-store';
import { extendLease, findTaskSummary, type TaskOutcome, type TaskSummary } from '../state/tasks-store';
import { claimLimitedRemoteTasks } from './limits';
import { nextAttemptAt } from './retry-policy';
import { recordTaskOutcomes } from './task-outcomes';
import type { UnitOfWork } from './unit-of-work';
import { commit } from './commit';

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
export const MAX_FAILURE_MESSAGE_LENGTH = MAX_RECORDED_MESSAGE_LENGTH;

export const FailRequest = z.object({
  claimId: z.uuid(),
  error: z.object({ type: safeText(MAX_FAILURE_TYPE_LENGTH).default('RemoteWorkerError'), message: safeText(MAX_FAILURE_MESSAGE_LENGTH) }),
  retryable: z.boolean().default(true),
  // Any safe integer is accepted and then capped (cappedRetryDelayMs): the worker asked for "later".
  retryAfterMs: z.number().int().min(0).optional(),
});

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

export class RemoteWorkers {
  constructor(
    private readonly pool: pg.Pool,
    private readonly deps: { registry: Registry; logger: Logger },
    private readonly unitOfWork: UnitOfWork,
  ) {}

  /** Claims up to maxTasks QUEUED remote tasks of the given types, oldest first, each with a lease. */
  async claim(body: unknown): Promise<RemoteTask[]> {
    const request = parseOrThrow(ClaimRequest, body, 'claim request');
    const leaseOf = (type: string) =>
      request.leaseSeconds ?? leaseSecondsOf(this.deps.registry.hasTask(type) ? this.deps.registry.task(type) : undefined, 'remote');
    // Types with global limits are claimed key by key under the keys' locks (core/engine/limits.ts),
    // so a remote worker counts against the same slots as the queue instances; the rest as before.
    const rows: RemoteClaim[] = [];
    const unlimited: string[] = [];
    for (const taskType of new Set(request.taskTypes)) {
      const limits = this.deps.registry.limitsOf(taskType);
      if (!limits) unlimited.push(taskType);
      else if (rows.length < request.maxTasks) {
        rows.push(
          ...(await claimLimitedRemoteTasks(this.pool, this.unitOfWork, {
            taskType,
            limits,
            leaseSeconds: leaseOf(taskType),
            limit: request.maxTasks - rows.length,
            workerId: request.workerId,
          })),
        );
      }
    }
    if (unlimited.length > 0 && rows.length < request.maxTasks) {
      rows.push(
        ...(await claimRemoteTasks(this.pool, {
          taskTypes: unlimited,
          leaseSeconds: unlimited.map(leaseOf),
          limit: request.maxTasks - rows.length,
          workerId: request.workerId,
        })),
      );
    }
    if (rows.length > 0) this.deps.logger.info('remote tasks claimed', { workerId: request.workerId, tasks: rows.length });
    return rows.map((row) => ({
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
    const request = parseOrThrow(HeartbeatRequest, body, 'heartbeat');
    const type = (await this.task(taskId)).task_type;
    const seconds = request.leaseSeconds ?? leaseSecondsOf(this.deps.registry.task(type), 'remote');
    if (!(await extendLease(this.pool, taskId, request.claimId, seconds))) throw new LeaseLostError(taskId);
    return { leaseExpiresAt: new Date(Date.now() + seconds * 1000) };
  }

  async complete(taskId: string, body: unknown): Promise<void> {
    const request = parseOrThrow(CompleteRequest, body, 'completion');
    const task = await this.task(taskId);
    const schema = this.deps.registry.task(task.task_type).result;
    const result = schema ? parseOrThrow(schema, request.result, `result of task ${taskId}`) : request.result;
    await this.settle({ taskId, jobId: task.job_id, claimId: request.claimId, result: result ?? null });
  }

  async fail(taskId: string, body: unknown): Promise<{ retryAt: Date | null }> {
    const request = parseOrThrow(FailRequest, body, 'failure report');
    const row = await this.task(taskId);
    const definition = this.deps.registry.hasTask(row.task_type) ? this.deps.registry.task(row.task_type) : undefined;
    // nextAttemptAt caps retryAfterMs (cappedRetryDelayMs), as for an in-process handler's TaskFailure.
    const failure = new TaskFailure(request.error.message, {
      nonRetryable: !request.retryable,
      ...(request.retryAfterMs === undefined ? {} : { retryAfterMs: request.retryAfterMs }),
    });
    const retryAt = nextAttemptAt(definition, row.attempt, failure);
    const error: ErrorShape = { ...errorToShape(failure, { stage: row.stage, taskId }), type: request.error.type };
    await this.settle({ taskId, jobId: row.job_id, claimId: request.claimId, error, ...(retryAt ? { retryAt } : {}) });
    return { retryAt: retryAt ?? null };
  }

  /** Admin: gives a stuck claim up now instead of waiting for its lease; the task is claimable again. */
  async release(taskId: string): Promise<void> {
    const released = await commit(this.unitOfWork, async ({ client }) => ({ value: await releaseRemoteClaim(client, taskId) }));
    if (!released) {
      // Same answers as complete and heartbeat: unknown task 404, no current claim 409.
      await this.task(taskId);
      throw new LeaseLostError(taskId);
    }
    this.deps.logger.warn('remote task claim released by an operator', { taskId });
  }

  /** The same settlement as an in-process result: its transitions are reported too. */
  private async settle(outcome: TaskOutcome): Promise<void> {
    // A claim no longer current changed nothing: the worker learns it lost the task.
    const settled = await commit(this.unitOfWork, async ({ client }) => {
      const recorded = await recordTaskOutcomes(client, [outcome]);
      return { value: recorded.settled, ...recorded.after };
    });
    if (!settled.has(outcome.taskId)) throw new LeaseLostError(outcome.taskId);
  }

  private async task(taskId: string): Promise<TaskSummary> {
    const row = await findTaskSummary(this.pool, taskId);
    if (!row) throw new TaskNotFoundError(taskId);
    return row;
  }
}
