import type pg from 'pg';
import { z } from 'zod';
import { leaseSecondsOf, RemoteTaskLogs, TaskFailure, type ErrorShape } from '../../models';
import { MAX_NAME_LENGTH, safeText } from '../../models/http-input';
import {
  errorToShape,
  LeaseLostError,
  MAX_RECORDED_MESSAGE_LENGTH,
  TaskNotFoundError,
  UnknownRemoteTaskTypeError,
  ValidationError,
  parseOrThrow,
} from '../errors';
import type { Logger } from '../logger';
import { jsonToStore } from '../../models/storable';
import { PayloadStoreUnavailableError } from '../payloads/payload-errors';
import { INLINE_PAYLOADS, type Payloads } from '../payloads/payloads';
import type { Registry } from '../registry';
import { claimRemoteTasks, releaseRemoteClaim, type RemoteClaim } from '../state/remote-tasks-store';
import { extendLease, findTaskSummary, type TaskOutcome, type TaskSummary } from '../state/tasks-store';
import { claimLimitedRemoteTasks } from './limits';
import { nextAttemptAt } from './retry-policy';
import { withReportedLogs } from './task-log-buffer';
import { recordTaskOutcomes } from './task-outcomes';
import type { UnitOfWork } from './unit-of-work';
import { commit } from './commit';
import { RemoteWorkerSightings } from './worker-sightings';

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
// Both reports may carry what the attempt logged (models/task-log.ts RemoteTaskLogs), written with the outcome.
export const CompleteRequest = z.object({ claimId: z.uuid(), result: z.unknown(), ...RemoteTaskLogs });
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
  ...RemoteTaskLogs,
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
  /** The workers view's record of who claims and reports, written by time, never per task. */
  private readonly sightings: RemoteWorkerSightings;

  constructor(
    private readonly pool: pg.Pool,
    private readonly deps: { registry: Registry; logger: Logger; payloads?: Payloads | undefined },
    private readonly unitOfWork: UnitOfWork,
  ) {
    this.sightings = new RemoteWorkerSightings(pool);
  }

  /**
   * Claims up to maxTasks QUEUED remote tasks of the given types, oldest first, each with a lease.
   * A type that is not a registered remote task type refuses the whole claim (nothing is claimed).
   */
  async claim(body: unknown): Promise<RemoteTask[]> {
    const request = parseOrThrow(ClaimRequest, body, 'claim request');
    this.checkClaimable(request.taskTypes);
    await this.sightings.claimed(request.workerId, request.taskTypes);
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
    const tasks: RemoteTask[] = [];
    for (const row of rows) {
      const parameters = await this.parametersOf(row);
      if (parameters.failed) continue;
      tasks.push({
        taskId: row.task_id,
        claimId: row.claim_id,
        jobId: row.job_id,
        stage: row.stage,
        taskIndex: row.task_index,
        taskType: row.task_type,
        attempt: row.attempt,
        parameters: parameters.value,
        leaseExpiresAt: row.lease_expires_at,
      });
    }
    return tasks;
  }

  /** No task of a type that is unknown, or runs from the tasks queue, is ever claimable here: the worker hears so at once. */
  private checkClaimable(taskTypes: readonly string[]): void {
    const { registry } = this.deps;
    const refused = [...new Set(taskTypes)]
      .filter((type) => !registry.hasTask(type) || registry.task(type).execution !== 'remote')
      .map((type) => ({ taskType: type, registered: registry.hasTask(type) }));
    if (refused.length > 0) throw new UnknownRemoteTaskTypeError(refused, registry.taskTypes('remote'));
  }

  /**
   * A worker gets values, never references: parameters in the payload store are read here. One
   * whose blob is missing or altered fails its task at once (non-retryable) and is not handed out;
   * an unreachable store is a 503, and the claims made return by lease expiry.
   */
  private async parametersOf(row: RemoteClaim): Promise<{ failed: false; value: unknown } | { failed: true }> {
    if (!row.parameters_ref) return { failed: false, value: row.parameters };
    try {
      return { failed: false, value: await (this.deps.payloads ?? INLINE_PAYLOADS).read(row.parameters_ref, `parameters of task ${row.task_id}`) };
    } catch (error) {
      if (error instanceof PayloadStoreUnavailableError) throw error;
      const shape = errorToShape(error, { stage: row.stage, taskId: row.task_id });
      await this.settle({ taskId: row.task_id, jobId: row.job_id, claimId: row.claim_id, error: shape }).catch(() => undefined);
      return { failed: true };
    }
  }

  async heartbeat(taskId: string, body: unknown): Promise<{ leaseExpiresAt: Date }> {
    const request = parseOrThrow(HeartbeatRequest, body, 'heartbeat');
    const task = await this.task(taskId);
    const seconds = request.leaseSeconds ?? leaseSecondsOf(this.deps.registry.task(task.task_type), 'remote');
    if (!(await extendLease(this.pool, taskId, request.claimId, seconds))) throw new LeaseLostError(taskId);
    await this.heardFrom(task);
    return { leaseExpiresAt: new Date(Date.now() + seconds * 1000) };
  }

  async complete(taskId: string, body: unknown): Promise<void> {
    const request = parseOrThrow(CompleteRequest, body, 'completion');
    const task = await this.task(taskId);
    const schema = this.deps.registry.task(task.task_type).result;
    const result = schema ? parseOrThrow(schema, request.result, `result of task ${taskId}`) : request.result;
    const stored = jsonToStore(result ?? null);
    if (stored.json === undefined) throw new ValidationError(`result of task ${taskId} ${stored.problem}`, [{ path: ['result'], message: stored.problem }]);
    // A result too large for a row goes to the payload store, as an in-process handler's does.
    const payloads = this.deps.payloads ?? INLINE_PAYLOADS;
    const placed = await payloads.place(stored.json, { jobId: task.job_id, owner: taskId, field: 'result' }, `result of task ${taskId}`);
    const base = { taskId, jobId: task.job_id, claimId: request.claimId };
    await this.settle(
      withReportedLogs(placed.ref ? { ...base, resultRef: placed.ref } : { ...base, result: result ?? null, resultJson: placed.json }, request),
    );
    await this.heardFrom(task);
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
    await this.settle(withReportedLogs({ taskId, jobId: row.job_id, claimId: request.claimId, error, ...(retryAt ? { retryAt } : {}) }, request));
    await this.heardFrom(row);
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

  /** A report on a current claim: its worker (the claim's, recorded on the task) was heard from. */
  private async heardFrom(task: TaskSummary): Promise<void> {
    if (task.worker_id) await this.sightings.heard(task.worker_id);
  }

  private async task(taskId: string): Promise<TaskSummary> {
    const row = await findTaskSummary(this.pool, taskId);
    if (!row) throw new TaskNotFoundError(taskId);
    return row;
  }
}
