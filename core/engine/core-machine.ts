import type pg from 'pg';
import { IdempotencyKey, JobWaitQuery, JobQueueMessage, JobSubmissionMessage, ListEventsQuery, ListJobsQuery, ListTasksQuery, type JobRecord, type JobView, type TaskRecord } from '../../models';
import { withTransaction } from '../db/pool';
import { RESULT_COMMIT_RETRY, retryTransient } from '../db/retry-transient';
import { assertSchemaVersion } from '../db/migrator';
import { JobNotFoundError, MalformedMessageError, ValidationError, describeZodError } from '../errors';
import { computeJobId } from '../identity';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import { findJob, insertJob, listJobs } from '../state/jobs-store';
import { toJobRecord, toTaskRecord } from '../state/rows';
import { buildJobView } from './job-view';
import { listStages } from '../state/stages-store';
import { listEvents, type EventRecord } from '../state/events-store';
import { listDeadLetters, type DeadLetterRecord } from '../state/dead-letters-store';
import { listTasks, releaseClaims, type TaskOutcome } from '../state/tasks-store';
import type { Transport } from '../transport/transport';
import { GroupCommitter } from './group-commit';
import { context } from '@opentelemetry/api';
import { contextFromTraceparent, currentTraceparent, emitEvent, inSpan, recordFailure, recordQueueWait, recordStageDuration, recordTaskDuration, SpanKind } from '../telemetry';
import type { AdvanceDeps, TransitionEvent } from './stage-advance';
import { RemoteWorkers } from './remote-workers';
import { cancelJob, pauseJob, resumeJob, retryJob } from './control';
import { processDeadLetter, type DeadLetter, type DeadLetterOutcome } from './dead-letters';
import { sweep, type JanitorOptions, type SweepReport } from '../janitor';
import type { PurgeCounts } from '../state/retention-store';
import { deleteJob } from './retention';
import { Outbox, type OutboxIntent } from './outbox';
import { claimStage, type JobMessageOutcome } from './stage-start';
import { createStageTasks, stageDefinitionOf } from './stage-creation';
import { UnitOfWork } from './unit-of-work';
import { waitUntilEnded } from './job-wait';
import { Schedules, type ScheduleSweepOptions } from '../schedules/schedules';
import { claim, classifyUnclaimed, commitOutcomes, parseTaskMessages, runClaimedTask, type TaskMessageOutcome } from './task-batch';

/** What the transport knows about a message besides its body. */
export interface MessageMeta {
  messageId?: string | undefined;
  deliveryCount?: number | undefined;
  /** W3C trace context from the message's application properties. */
  traceparent?: string | undefined;
  enqueuedTime?: Date | undefined;
}

function messageAttributes(meta: MessageMeta): Record<string, string | number> {
  return { ...(meta.messageId ? { messageId: meta.messageId } : {}), ...(meta.deliveryCount ? { deliveryCount: meta.deliveryCount } : {}) };
}

export interface CoreMachineDeps {
  pool: pg.Pool;
  registry: Registry;
  transport: Transport;
  logger: Logger;
  /** The schedules' clock and default catch-up window (tests pass a fake clock). */
  schedules?: Partial<ScheduleSweepOptions>;
  /** Janitor sweeps delete finished jobs older than this many days; 0 or unset keeps everything. */
  retentionDays?: number;
}

/**
 * The engine's public surface: submit, process job and task messages, read state.
 * Every method is safe under at-least-once delivery: a repeated call changes nothing twice.
 */
export class CoreMachine {
  readonly outbox: Outbox;
  /** Tasks of 'remote' task types, claimed and reported over HTTP. */
  readonly remote: RemoteWorkers;
  /** Declared schedules: the sweep that fires their ticks, listing, pause and resume. */
  readonly schedules: Schedules;
  private readonly committer = new GroupCommitter<TaskOutcome, boolean>((results) => this.commitResults(results));
  /** Handlers running in this process, so a cancel can abort them through their signal. */
  private readonly running = new Map<string, AbortController>();
  private readonly pool: pg.Pool;
  private readonly registry: Registry;
  private readonly logger: Logger;
  private readonly transport: Transport;
  private readonly retentionDays: number;

  private constructor(deps: CoreMachineDeps) {
    this.retentionDays = deps.retentionDays ?? 0;
    this.pool = deps.pool;
    this.registry = deps.registry;
    this.logger = deps.logger;
    this.transport = deps.transport;
    this.outbox = new Outbox(deps.pool, deps.transport);
    this.remote = new RemoteWorkers(deps.pool, { registry: deps.registry, logger: deps.logger }, this.outbox);
    this.schedules = new Schedules(deps.pool, deps.registry, deps.logger, (jobType, parameters, key) => this.submitJob(jobType, parameters, { idempotencyKey: key }), deps.schedules);
  }

  /** Refuses to start against a database whose schema version is not the one this code expects. */
  static async create(deps: CoreMachineDeps): Promise<CoreMachine> {
    await assertSchemaVersion(deps.pool);
    return new CoreMachine(deps);
  }

  /**
   * Validates parameters (nothing is stored when they are invalid), derives the job id from type
   * and canonical parameters, and inserts the job with its first job message in the outbox.
   * Submitting the same job again returns the existing one.
   */
  async submitJob(jobType: string, parameters: unknown, options: { idempotencyKey?: string | null | undefined } = {}): Promise<{ job: JobView; created: boolean }> {
    const definition = this.registry.job(jobType);
    const key = options.idempotencyKey ?? undefined;
    const keyCheck = key === undefined ? undefined : IdempotencyKey.safeParse(key);
    if (keyCheck && !keyCheck.success) {
      const issues = keyCheck.error.issues.map((issue) => ({ ...issue, path: ['Idempotency-Key', ...issue.path] }));
      throw new ValidationError(`invalid Idempotency-Key: ${describeZodError(keyCheck.error)}`, issues);
    }
    const parsed = definition.parameters.safeParse(parameters);
    if (!parsed.success) {
      throw new ValidationError(`invalid parameters for job type "${jobType}": ${describeZodError(parsed.error)}`, parsed.error.issues);
    }
    const jobId = computeJobId(jobType, parsed.data, key);
    const message: JobQueueMessage = { jobId, jobType, stage: 1 };
    // The submit span is the root of the job's trace: its context is stored with the job.
    return inSpan('coremachine.submit', { jobId, jobType }, context.active(), async () => {
      const { created, recorded } = await withTransaction(this.pool, async (client) => {
        const inserted = await insertJob(client, { jobId, jobType, totalStages: definition.stages.length, parameters: parsed.data, traceparent: currentTraceparent(), idempotencyKey: key });
        const intents = inserted.created ? await this.outbox.record(client, [{ kind: 'job', jobId, message }]) : [];
        return { created: inserted.created, recorded: intents };
      });
      await this.outbox.dispatch(recorded);
      if (created) {
        this.logger.info('job submitted', { jobId, jobType });
        this.report([{ name: 'JobTransition', attributes: { jobId, jobType, from: 'none', to: 'QUEUED', stage: 1 } }]);
      }
      return { job: await this.getJob(jobId), created };
    }, SpanKind.PRODUCER);
  }

  /**
   * A submission that arrived as a queue message. Invalid ones raise ValidationError (with the zod
   * issues) or UnknownJobTypeError, both non-retryable: the transport dead-letters them and nothing
   * is stored.
   */
  async submitFromMessage(body: unknown): Promise<{ job: JobView; created: boolean }> {
    const parsed = JobSubmissionMessage.safeParse(body);
    if (!parsed.success) throw new ValidationError(`submission message must be {jobType, parameters, idempotencyKey?}: ${describeZodError(parsed.error)}`, parsed.error.issues);
    return this.submitJob(parsed.data.jobType, parsed.data.parameters, { idempotencyKey: parsed.data.idempotencyKey });
  }

  /**
   * `GET jobs/{jobId}?waitSeconds=N`: the job once it has ended, or as it is after N seconds
   * (long-poll, 0 ≤ N ≤ 60; absent or 0 answers at once).
   */
  async waitForJob(jobId: string, query: unknown = {}, signal?: AbortSignal): Promise<JobView> {
    const parsed = JobWaitQuery.safeParse(query);
    if (!parsed.success) throw new ValidationError(`invalid job query: ${describeZodError(parsed.error)}`, parsed.error.issues);
    const waitSeconds = parsed.data.waitSeconds ?? 0;
    if (waitSeconds > 0) await waitUntilEnded(this.pool, jobId, { waitSeconds, signal });
    return this.getJob(jobId);
  }

  async getJob(jobId: string): Promise<JobView> {
    const row = await findJob(this.pool, jobId);
    if (!row) throw new JobNotFoundError(jobId);
    const stages = await listStages(this.pool, jobId);
    return buildJobView(row, stages, this.registry.hasJob(row.job_type) ? this.registry.job(row.job_type) : undefined);
  }

  async listJobs(query: unknown = {}): Promise<{ jobs: JobRecord[]; nextCursor: string | null }> {
    const parsed = ListJobsQuery.safeParse(query);
    if (!parsed.success) throw new ValidationError(`invalid job list query: ${describeZodError(parsed.error)}`, parsed.error.issues);
    const { rows, nextCursor } = await listJobs(this.pool, parsed.data);
    return { jobs: rows.map(toJobRecord), nextCursor };
  }

  async listTasks(jobId: string, query: unknown = {}): Promise<TaskRecord[]> {
    const parsed = ListTasksQuery.safeParse(query);
    if (!parsed.success) throw new ValidationError(`invalid task list query: ${describeZodError(parsed.error)}`, parsed.error.issues);
    if (!(await findJob(this.pool, jobId))) throw new JobNotFoundError(jobId);
    return (await listTasks(this.pool, jobId, parsed.data)).map(toTaskRecord);
  }

  /** Starts the stage a job message names. Throws on anything that must be redelivered. */
  async processJobMessage(body: unknown, meta: MessageMeta = {}): Promise<JobMessageOutcome> {
    const parsed = JobQueueMessage.safeParse(body);
    if (!parsed.success) {
      throw new MalformedMessageError(`job message does not match JobQueueMessage: ${describeZodError(parsed.error)}`, parsed.error.issues);
    }
    const { jobId, jobType, stage } = parsed.data;
    const attributes = { jobId, jobType, stage, ...messageAttributes(meta) };
    return inSpan('coremachine.stage_start', attributes, contextFromTraceparent(meta.traceparent), async (span) => {
      // The claim commits on its own; the tasks follow in chunks, each its own unit of work.
      const work = new UnitOfWork(this.pool, this.outbox, { registry: this.registry, logger: this.logger });
      const claimed = await work.run(async ({ client, deps }) => {
        const decided = await claimStage(client, deps, parsed.data);
        return { value: decided, intents: decided.kind === 'done' ? decided.intents : [] };
      });
      const outcome =
        claimed.kind === 'done'
          ? claimed.outcome
          : await createStageTasks(work, this.pool, stageDefinitionOf(this.registry, claimed.job), claimed.job, claimed.stage, claimed.resend);
      span.setAttribute('outcome', outcome.outcome);
      if (outcome.outcome === 'duplicate' || outcome.outcome === 'ignored') {
        this.logger.info(`job message ${outcome.outcome}`, { jobId: outcome.jobId, stage: outcome.stage, reason: outcome.reason });
      }
      return outcome;
    });
  }

  /**
   * Handles a batch of task messages: one claim statement, handlers concurrently, and results
   * group-committed as they finish. Returns one outcome per message, in order. Throws only on errors where
   * redelivery can help (database unreachable); the batch is then abandoned as a whole.
   */
  async processTaskMessages(bodies: readonly unknown[], metas: readonly MessageMeta[] = []): Promise<TaskMessageOutcome[]> {
    const { parsed, outcomes } = parseTaskMessages(bodies);
    const metaByTask = new Map(parsed.map((p) => [p.message.taskId, metas[p.index] ?? {}]));
    const deps = this.deps();
    const claimed = await retryTransient(() => claim(this.pool, deps, parsed));
    const claimedIds = new Set(claimed.map((task) => task.task_id));
    const unclaimed = parsed.filter((p) => !claimedIds.has(p.message.taskId));
    const settledById = new Map<string, TaskMessageOutcome>();
    // Claims this process cannot finish are given back at once: left to expire, they would come
    // back through the janitor as a lost lease, which counts as an attempt.
    const releaseUnsettled = () =>
      retryTransient(() => releaseClaims(this.pool, claimed.filter((task) => !settledById.has(task.task_id)).map((task) => ({ taskId: task.task_id, claimId: task.claim_id }))));
    try {
      for (const [index, outcome] of await retryTransient(() => classifyUnclaimed(this.pool, unclaimed))) outcomes[index] = outcome;
    } catch (error) {
      await releaseUnsettled();
      throw error;
    }

    const results = await Promise.allSettled(
      claimed.map((task) => {
        const meta = metaByTask.get(task.task_id) ?? {};
        const attributes = { jobId: task.job_id, taskId: task.task_id, stage: task.stage, attempt: task.attempt, taskType: task.task_type, ...messageAttributes(meta) };
        return inSpan('coremachine.task', attributes, contextFromTraceparent(meta.traceparent), async (span) => {
          const started = Date.now();
          if (meta.enqueuedTime) recordQueueWait(started - meta.enqueuedTime.getTime(), { taskType: task.task_type });
          const controller = new AbortController();
          this.running.set(task.task_id, controller);
          let result: TaskOutcome;
          try {
            result = await runClaimedTask(this.pool, deps, task, this.logger, controller);
          } finally {
            this.running.delete(task.task_id);
          }
          recordTaskDuration(Date.now() - started, { taskType: task.task_type, outcome: result.error ? 'error' : 'ok' });
          if (result.error) recordFailure(span, Object.assign(new Error(result.error.message), { name: result.error.type }));
          const settled = await this.committer.add(result);
          span.setAttribute('outcome', settled ? (result.retryAt ? 'retry' : result.error ? 'failed' : 'completed') : 'fenced');
          settledById.set(task.task_id, settled
            ? { outcome: result.error ? 'failed' : 'completed', taskId: task.task_id }
            : { outcome: 'fenced', taskId: task.task_id, reason: 'claim was no longer current when the result arrived' });
        });
      }),
    );
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) {
      // The batch goes back to the queue: let the redelivery re-claim what we hold.
      await releaseUnsettled();
      throw failure.reason;
    }
    for (const { index, message } of parsed) {
      if (!outcomes[index] && claimedIds.has(message.taskId)) outcomes[index] = settledById.get(message.taskId);
    }
    return outcomes.map((outcome, index) => {
      if (!outcome) throw new Error(`task message ${index} of the batch has no outcome`);
      return outcome;
    });
  }

  async cancelJob(jobId: string): Promise<JobView> {
    const { runningTaskIds } = await withTransaction(this.pool, (client) => cancelJob(client, jobId));
    for (const taskId of runningTaskIds) this.running.get(taskId)?.abort(new Error(`job ${jobId} was cancelled`));
    this.logger.info('job cancelled', { jobId, abortedTasks: runningTaskIds.length });
    return this.getJob(jobId);
  }

  async pauseJob(jobId: string): Promise<JobView> {
    await withTransaction(this.pool, (client) => pauseJob(client, jobId));
    this.logger.info('job paused', { jobId });
    return this.getJob(jobId);
  }

  async resumeJob(jobId: string): Promise<JobView> {
    return this.controlWithMessage(jobId, 'resumed', resumeJob);
  }

  async retryJob(jobId: string): Promise<JobView> {
    return this.controlWithMessage(jobId, 'retried', retryJob);
  }

  /** Marks what a dead-lettered message pointed at FAILED, and records the message. */
  async processDeadLetter(letter: DeadLetter): Promise<DeadLetterOutcome> {
    const deps = this.deps();
    const { outcome, recorded } = await withTransaction(this.pool, async (client) => {
      deps.events.length = 0;
      const handled = await processDeadLetter(client, deps, letter);
      return { outcome: handled.outcome, recorded: await this.outbox.record(client, handled.intents) };
    });
    this.report(deps.events);
    await this.outbox.dispatch(recorded);
    return outcome;
  }

  /** Messages no consumer could use, newest first, where an operator sees them. */
  async listDeadLetters(query: { jobId?: string; beforeId?: number; limit?: number } = {}): Promise<DeadLetterRecord[]> {
    return listDeadLetters(this.pool, { ...query, limit: Math.min(Math.max(query.limit ?? 100, 1), 1000) });
  }

  /** One janitor sweep; safe to run from several processes at once. */
  async sweep(options: Partial<JanitorOptions> = {}): Promise<SweepReport> {
    const backlog = () => this.transport.backlog?.();
    return sweep(this.pool, this.deps(), this.outbox, { stallAfterMs: 5 * 60_000, outboxAgeMs: 30_000, batchSize: 500, backlog, retentionDays: this.retentionDays, schedules: () => this.schedules.sweep(), ...options });
  }

  /** Deletes a finished job with its stages, tasks, events, dead letters and outbox rows. */
  async deleteJob(jobId: string): Promise<PurgeCounts> {
    const deleted = await deleteJob(this.pool, jobId);
    this.logger.info('job deleted', { jobId, ...deleted });
    return deleted;
  }

  /** The job's audit trail: ascending from afterId, or with order 'desc' from the newest end (beforeId pages back). */
  async listEvents(jobId: string, query: unknown = {}): Promise<EventRecord[]> {
    const parsed = ListEventsQuery.safeParse(query);
    if (!parsed.success) throw new ValidationError(`invalid event list query: ${describeZodError(parsed.error)}`, parsed.error.issues);
    if (!(await findJob(this.pool, jobId))) throw new JobNotFoundError(jobId);
    return listEvents(this.pool, jobId, parsed.data);
  }

  private async controlWithMessage(
    jobId: string,
    verb: string,
    action: (db: pg.PoolClient, jobId: string) => Promise<{ intents: OutboxIntent[] }>,
  ): Promise<JobView> {
    const recorded = await withTransaction(this.pool, async (client) => this.outbox.record(client, (await action(client, jobId)).intents));
    await this.outbox.dispatch(recorded);
    this.logger.info(`job ${verb}`, { jobId });
    return this.getJob(jobId);
  }

  /** One transaction for every result that is ready; the stage counters move by k at once. */
  private async commitResults(results: TaskOutcome[]): Promise<Map<TaskOutcome, boolean>> {
    const deps = this.deps();
    // Each result cost a handler run: ride out a longer outage before giving the messages back.
    const { settled, recorded } = await withTransaction(
      this.pool,
      async (client) => {
        deps.events.length = 0; // a rerun after a transient fault reports only its own transitions
        const committed = await commitOutcomes(client, deps, results);
        return { settled: committed.settled, recorded: await this.outbox.record(client, committed.intents) };
      },
      { retry: RESULT_COMMIT_RETRY },
    );
    this.report(deps.events);
    await this.outbox.dispatch(recorded);
    return new Map(results.map((result) => [result, settled.has(result.taskId)]));
  }

  /** Fresh per transaction: its transition events are reported only once it commits. */
  private deps(): AdvanceDeps & { events: TransitionEvent[] } {
    return { registry: this.registry, logger: this.logger, events: [] };
  }

  private report(events: readonly TransitionEvent[]): void {
    for (const event of events) {
      emitEvent(`CoreMachine.${event.name}`, event.attributes);
      if (event.stageDurationMs !== undefined) recordStageDuration(event.stageDurationMs, { jobType: String(event.attributes.jobType), stage: Number(event.attributes.stage) });
    }
  }
}
