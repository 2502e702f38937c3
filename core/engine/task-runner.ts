import type pg from 'pg';
import { parseTaskQueueMessage, type TaskQueueMessage } from '../../models';
import { RESULT_COMMIT_RETRY, retryTransient } from '../db/retry-transient';
import { MalformedMessageError, TaskNotFoundError, describeZodError } from '../errors';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import { describeTasks, jobVersionsOfTasks, releaseClaims, type ClaimedTask, type TaskOutcome, type TaskState } from '../state/tasks-store';
import { contextFromTraceparent, recordFailure, recordQueueWait, recordTaskDuration, runWithin, startSpan, withMessageAttributes } from '../telemetry';
import { failOverdueJobs } from './deadlines';
import type { MessageMeta } from '../transport/settle-batch';
import { leaseOfType, runClaimedTask } from './run-task';
import { ConcurrencyClaims, claimLimitedTasks, wakeWaitingTasks } from './limits';
import { RecentDeferrals } from './recent-deferrals';
import { GroupCommitter } from './group-commit';
import { SharedClaims } from './shared-claims';
import { recordsInOneStatement, recordTaskOutcomes } from './task-outcomes';
import { LeaseKeeper, TaskAbort, type RunningTask } from './running-tasks';
import type { RunningTaskAbort } from './after-commit';
import { commit } from './commit';
import { waitingForVersion } from './versions';
import { claimByShare } from './fair-share';
import type { UnitOfWork } from './unit-of-work';
import { INLINE_PAYLOADS, type Payloads } from '../payloads/payloads';
import { HostPresence } from './host-presence';

export type TaskMessageOutcome =
  | { kind: 'completed' | 'failed'; taskId: string }
  | { kind: 'duplicate' | 'ignored' | 'fenced'; taskId: string; reason: string }
  /** The task's concurrency or rate limit is reached: it stays QUEUED and the message comes back later. */
  | { kind: 'deferred'; taskId: string; reason: string; retryAfterMs?: number }
  /**
   * The task's job runs a version this deployment does not register: it stays QUEUED, unclaimed, and
   * the janitor sends its message again once the version is deployed (core/engine/versions.ts).
   */
  | { kind: 'waiting'; taskId: string; reason: string }
  | { kind: 'malformed'; taskId?: string; reason: string; error: MalformedMessageError | TaskNotFoundError };

export interface Parsed {
  index: number;
  message: TaskQueueMessage;
}

/** A key whose messages were deferred here within this window probably has tasks waiting for a slot. */
const WAKE_AFTER_DEFERRAL_MS = 60_000;

/**
 * A batch of task messages, whole: parse → claim (one statement) → classify what could not be
 * claimed → run the handlers concurrently → hand each result to the group committer (which settles
 * it in a unit of work) → one outcome per message, in order. Throws only on errors where
 * redelivery can help (database unreachable); the batch is then given back as a whole.
 */
export class TaskRunner {
  private readonly committer = new GroupCommitter<TaskOutcome, boolean>((results) => this.commit(results));
  private readonly concurrencyClaims: ConcurrencyClaims;
  /** Claims of the batches handled here at the same moment, in one statement. */
  private readonly sharedClaims: SharedClaims;
  /** Handlers running in this process: a cancel aborts them, a shutdown gives their claims back, the keeper extends their leases. */
  private readonly running = new Map<string, RunningTask>();
  /** When this process last deferred a message of each slot key: only then is a freed slot worth a wake-up. */
  private readonly deferrals = new RecentDeferrals(WAKE_AFTER_DEFERRAL_MS);
  /** Extends running handlers' leases, so a short lease never expires under a live handler. */
  private readonly leases: LeaseKeeper;
  /** This process in the workers view: joins with its first batch, beats on a timer, names the tasks it claims. */
  readonly presence: HostPresence;

  constructor(
    private readonly pool: pg.Pool,
    private readonly registry: Registry,
    private readonly logger: Logger,
    private readonly unitOfWork: UnitOfWork,
    /** See CoreMachineDeps.extendLeases. */
    private readonly extendLeases = true,
    /** Where results too large for a row go, and stored parameters come from. */
    private readonly payloads: Payloads = INLINE_PAYLOADS,
  ) {
    this.leases = new LeaseKeeper(this.running, pool, logger);
    this.presence = new HostPresence(pool, registry, logger);
    this.concurrencyClaims = new ConcurrencyClaims(pool, this.presence.workerId, this.deferrals);
    this.sharedClaims = new SharedClaims(pool, this.presence.workerId);
  }

  /** Handlers running in this process now. */
  get runningCount(): number {
    return this.running.size;
  }

  /**
   * Shutdown: handlers still running after the grace period are aborted and their claims given
   * back (QUEUED at the same attempt), so another instance runs them at once instead of after
   * their lease. A result such a handler reports later is fenced off by its stale claim.
   */
  async releaseRunning(reason: Error): Promise<number> {
    const running = [...this.running];
    const claims = running.map(([taskId, task]) => ({ taskId, claimId: task.claimId }));
    // Given back before the handlers hear of it: an aborted handler fails at once, and its failure,
    // committed first, would end the task FAILED instead of QUEUED (seen on a loaded machine). Once
    // released, the claim is stale and that result is fenced off.
    try {
      await retryTransient(() => releaseClaims(this.pool, claims));
    } finally {
      // Aborted even when the give-back failed (its error goes on to the caller): the host is stopping.
      for (const [, task] of running) task.abort.abort(reason);
    }
    return claims.length;
  }

  /** Aborts handlers of these tasks running here (their job was cancelled, failed or timed out). */
  abort(tasks: readonly RunningTaskAbort[]): void {
    for (const { taskId, reason } of tasks) this.running.get(taskId)?.abort.abort(reason);
  }

  async process(bodies: readonly unknown[], metas: readonly MessageMeta[] = []): Promise<TaskMessageOutcome[]> {
    this.presence.start();
    const { parsed: received, outcomes } = parseTaskMessages(bodies);
    const parsed = await this.setAsideWaiting(received, outcomes);
    const metaByTask = new Map(parsed.map((p) => [p.message.taskId, metas[p.index] ?? {}]));
    const limited: Parsed[] = [];
    const unlimited: Parsed[] = [];
    for (const p of parsed) (this.registry.limitsOf(p.message.taskType) ? limited : unlimited).push(p);
    const workerId = this.presence.workerId;
    const claimed = await this.claim(unlimited);
    const settledById = new Map<string, TaskMessageOutcome>();
    // Claims this process cannot finish are given back at once: left to expire, they would come
    // back through the janitor as a lost lease, which counts as an attempt.
    const releaseUnsettled = () =>
      retryTransient(() =>
        releaseClaims(
          this.pool,
          claimed.filter((task) => !settledById.has(task.task_id)).map((task) => ({ taskId: task.task_id, claimId: task.claim_id })),
        ),
      );
    let claimedIds = new Set<string>();
    /** Messages that claimed another task than their own (fair share): message index → task id. */
    const claimedFor = new Map<number, string>();
    try {
      // Limited task types are claimed under their keys' locks; what cannot start now is deferred.
      const requests = limited.map(({ message }) => ({
        taskId: message.taskId,
        attempt: message.attempt,
        taskType: message.taskType,
        leaseSeconds: leaseOfType(this.registry, message.taskType),
      }));
      const deferred = await claimLimitedTasks(this.pool, this.unitOfWork, this.registry, requests, claimed, workerId, this.concurrencyClaims);
      for (const { index, message } of limited) {
        const deferral = deferred.get(message.taskId);
        if (!deferral) continue;
        this.deferrals.note(deferral.limitKey);
        outcomes[index] = {
          kind: 'deferred',
          taskId: message.taskId,
          reason: deferral.reason,
          ...(deferral.retryAfterMs === undefined ? {} : { retryAfterMs: deferral.retryAfterMs }),
        };
      }
      claimedIds = new Set(claimed.map((task) => task.task_id));
      const unclaimed = parsed.filter((p) => !claimedIds.has(p.message.taskId) && !deferred.has(p.message.taskId));
      const states = new Map(
        (
          await retryTransient(() =>
            describeTasks(
              this.pool,
              unclaimed.map((p) => p.message.taskId),
            ),
          )
        ).map((state) => [state.task_id, state]),
      );
      // Messages of tasks with a priority or fairness key claim by share, whatever their own task's state.
      const fair = unclaimed.filter((p) => states.get(p.message.taskId)?.fair);
      if (fair.length > 0) {
        const requests = fair.map((p) => ({ index: p.index, taskType: p.message.taskType }));
        for (const { index, task } of await retryTransient(() => claimByShare(this.pool, this.registry, requests, workerId))) {
          claimed.push(task);
          claimedFor.set(index, task.task_id);
          metaByTask.set(task.task_id, metas[index] ?? {});
        }
      }
      for (const [index, outcome] of classifyUnclaimed(
        states,
        unclaimed.filter((p) => !claimedFor.has(p.index)),
      ))
        outcomes[index] = outcome;
      await this.failOverdue(parsed, outcomes);
    } catch (error) {
      await releaseUnsettled();
      throw error;
    }

    if (claimed.length > 0) this.presence.claimed();
    const results = await Promise.allSettled(claimed.map((task) => this.runAndSettle(task, metaByTask.get(task.task_id) ?? {}, settledById)));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) {
      // The batch goes back to the queue: let the redelivery re-claim what we hold.
      await releaseUnsettled();
      throw failure.reason;
    }
    for (const { index, message } of parsed) {
      if (outcomes[index]) continue;
      const taskId = claimedFor.get(index) ?? (claimedIds.has(message.taskId) ? message.taskId : undefined);
      if (taskId !== undefined) outcomes[index] = settledById.get(taskId);
    }
    return outcomes.map((outcome, index) => {
      if (!outcome) throw new Error(`task message ${index} of the batch has no outcome`);
      return outcome;
    });
  }

  /** Claims the batch's tasks (not limited, not by share) with those of the batches claiming at the same moment. */
  private claim(parsed: readonly Parsed[]): Promise<ClaimedTask[]> {
    return this.sharedClaims.claim({
      requests: parsed.map((p) => ({ taskId: p.message.taskId, attempt: p.message.attempt })),
      leaseSeconds: parsed.map((p) => leaseOfType(this.registry, p.message.taskType)),
    });
  }

  /**
   * The claim skips tasks of jobs past a deadline, and they come back 'ignored': those jobs are
   * failed with their Timeout now rather than at the next janitor sweep, so no handler starts late.
   */
  private async failOverdue(parsed: readonly Parsed[], outcomes: Array<TaskMessageOutcome | undefined>): Promise<void> {
    const ignored = parsed.filter((p) => outcomes[p.index]?.kind === 'ignored');
    if (ignored.length === 0) return;
    const jobIds = [...new Set(ignored.map((p) => p.message.jobId))];
    const timedOut = await retryTransient(() =>
      commit(this.unitOfWork, async ({ client, context }) => {
        const failed = await failOverdueJobs(client, context, jobIds.length, jobIds);
        return { value: failed.jobs, ...failed.after };
      }),
    );
    const reasons = new Map(timedOut.map((job) => [job.jobId, job.reason.message]));
    for (const { index, message } of ignored) {
      const reason = reasons.get(message.jobId);
      if (reason) outcomes[index] = { kind: 'ignored', taskId: message.taskId, reason };
    }
  }

  /**
   * A task type this deployment does not know is either a bad message or the task of a job whose
   * version was dropped from the deployment. The second must not be claimed (its failure would be
   * recorded as the task's): it waits. Costs a query only when a batch holds an unknown type.
   */
  private async setAsideWaiting(parsed: readonly Parsed[], outcomes: Array<TaskMessageOutcome | undefined>): Promise<readonly Parsed[]> {
    const unknown = parsed.filter((p) => !this.registry.hasTask(p.message.taskType));
    if (unknown.length === 0) return parsed;
    const jobs = new Map(
      (
        await retryTransient(() =>
          jobVersionsOfTasks(
            this.pool,
            unknown.map((p) => p.message.taskId),
          ),
        )
      ).map((row) => [row.task_id, row]),
    );
    const runnable: Parsed[] = [];
    for (const p of parsed) {
      const job = jobs.get(p.message.taskId);
      const waiting = job ? waitingForVersion(this.registry, job) : undefined;
      if (waiting) {
        this.logger.warn("task message waits: its job's version is not deployed", { taskId: p.message.taskId, jobId: p.message.jobId, reason: waiting });
        outcomes[p.index] = { kind: 'waiting', taskId: p.message.taskId, reason: waiting };
      } else runnable.push(p);
    }
    return runnable;
  }

  /**
   * One claimed task in its span: the handler's run, then its result through the group committer;
   * its outcome goes into `settledById`. One async frame per task, not a chain of wrappers: this
   * runs for every task.
   */
  private async runAndSettle(task: ClaimedTask, meta: MessageMeta, settledById: Map<string, TaskMessageOutcome>): Promise<void> {
    const attributes = withMessageAttributes(
      { jobId: task.job_id, taskId: task.task_id, stage: task.stage, attempt: task.attempt, taskType: task.task_type },
      meta,
    );
    const { span, within } = startSpan('coremachine.task', attributes, contextFromTraceparent(meta.traceparent));
    try {
      const started = Date.now();
      if (meta.enqueuedTime) recordQueueWait(started - meta.enqueuedTime.getTime(), { taskType: task.task_type });
      const controller = new TaskAbort();
      const leaseSeconds = leaseOfType(this.registry, task.task_type);
      // With extendLeases off, renewAt is never reached: the lease lives by the handler's heartbeat alone.
      this.running.set(task.task_id, {
        abort: controller,
        claimId: task.claim_id,
        leaseSeconds,
        renewAt: this.extendLeases ? started + (leaseSeconds * 1000) / 3 : Number.POSITIVE_INFINITY,
      });
      if (this.extendLeases) this.leases.watch(leaseSeconds);
      let result: TaskOutcome;
      try {
        result = await runWithin(within, () => runClaimedTask(this.pool, this.registry, task, this.logger, controller, this.payloads));
      } finally {
        this.running.delete(task.task_id);
      }
      recordTaskDuration(Date.now() - started, { taskType: task.task_type, outcome: result.error ? 'error' : 'ok' });
      if (result.error) recordFailure(span, Object.assign(new Error(result.error.message), { name: result.error.type }));
      const settled = await runWithin(within, () => this.committer.add(result));
      // A concurrency slot was freed: hand it to a waiting task now rather than to whichever
      // deferred message happens to come back first.
      if (
        settled &&
        task.limit_key !== null &&
        this.deferrals.within(task.limit_key, WAKE_AFTER_DEFERRAL_MS) &&
        this.registry.limitsOf(task.task_type)?.limit !== undefined
      ) {
        const limitKey = task.limit_key;
        await runWithin(within, () => retryTransient(() => wakeWaitingTasks(this.unitOfWork, limitKey, 1)));
      }
      span.setAttribute('outcome', settled ? (result.retryAt ? 'retry' : result.error ? 'failed' : 'completed') : 'fenced');
      settledById.set(
        task.task_id,
        settled
          ? { kind: result.error ? 'failed' : 'completed', taskId: task.task_id }
          : { kind: 'fenced', taskId: task.task_id, reason: 'claim was no longer current when the result arrived' },
      );
    } catch (error) {
      recordFailure(span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  /** One unit of work for every result that is ready; the stage counters move by k at once. */
  private async commit(results: TaskOutcome[]): Promise<Map<TaskOutcome, boolean>> {
    // Each result cost a handler run: ride out a longer outage before giving the messages back.
    const settled = await commit(
      this.unitOfWork,
      async ({ client }) => {
        const recorded = await recordTaskOutcomes(client, results);
        return { value: recorded.settled, ...recorded.after };
      },
      { retry: RESULT_COMMIT_RETRY, singleStatement: recordsInOneStatement(results) },
    );
    return new Map(results.map((result) => [result, settled.has(result.taskId)]));
  }
}

export function parseTaskMessages(bodies: readonly unknown[]): { parsed: Parsed[]; outcomes: Array<TaskMessageOutcome | undefined> } {
  const outcomes: Array<TaskMessageOutcome | undefined> = bodies.map(() => undefined);
  const parsed: Parsed[] = [];
  const seen = new Set<string>();
  bodies.forEach((body, index) => {
    const result = parseTaskQueueMessage(body);
    if (!result.success) {
      const error = new MalformedMessageError(`task message does not match TaskQueueMessage: ${describeZodError(result.error)}`, result.error.issues);
      outcomes[index] = { kind: 'malformed', reason: error.message, error };
      return;
    }
    const key = `${result.data.taskId}:${result.data.attempt}`;
    if (seen.has(key)) {
      outcomes[index] = { kind: 'duplicate', taskId: result.data.taskId, reason: 'same message twice in one batch' };
      return;
    }
    seen.add(key);
    parsed.push({ index, message: result.data });
  });
  return { parsed, outcomes };
}

/** Why a message could not claim its task: already done, stopped, or in flight elsewhere. */
function classifyUnclaimed(states: ReadonlyMap<string, TaskState>, unclaimed: readonly Parsed[]): Map<number, TaskMessageOutcome> {
  const outcomes = new Map<number, TaskMessageOutcome>();
  for (const { index, message } of unclaimed) {
    const state = states.get(message.taskId);
    const taskId = message.taskId;
    if (!state) {
      const error = new TaskNotFoundError(taskId);
      outcomes.set(index, { kind: 'malformed', taskId, reason: error.message, error });
    } else if (state.attempt > message.attempt || state.status === 'COMPLETED' || state.status === 'FAILED' || state.status === 'CANCELLED') {
      outcomes.set(index, { kind: 'duplicate', taskId, reason: `task is ${state.status} at attempt ${state.attempt}` });
    } else if (state.status === 'PROCESSING') {
      outcomes.set(index, { kind: 'duplicate', taskId, reason: 'task is being processed under a live lease' });
    } else {
      outcomes.set(index, { kind: 'ignored', taskId, reason: 'job is not processing this stage' });
    }
  }
  return outcomes;
}
