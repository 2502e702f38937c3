import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import {
  IdempotencyKey,
  JobIdentity,
  JobScheduling,
  fairShareColumns,
  isSignalMessageBody,
  ListDeadLettersQuery,
  ReplyToQueue,
  JobVersionInput,
  JobWaitQuery,
  JobQueueMessage,
  JobSubmissionMessage,
  ListEventsQuery,
  SignalMessage,
  signalStageOf,
  ListJobsQuery,
  ListTasksQuery,
  BulkParams,
  BulkRequest,
  RerunRequest,
  type BulkAction,
  type BulkOutcome,
  type RerunOutcome,
  type JobView,
  type TaskLogPage,
  type TaskRecord,
} from '../../models';
import { JobId } from '../../models/http-input';
import { assertSchemaVersion } from '../db/migrator';
import {
  ConfigurationError,
  JobNotFoundError,
  MalformedMessageError,
  SignalRefusedError,
  describeZodError,
  errorToShape,
  isNonRetryable,
  parseOrThrow,
  refuseUnstorable,
} from '../errors';
import { computeJobId } from '../identity';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import { findJob, insertJob, listJobs } from '../state/jobs-store';
import { toJobRecord, toTaskRecord } from '../state/rows';
import { buildJobView } from './job-view';
import { withCurrentStages } from './job-list';
import type { JobListPage } from '../../models/job-list';
import { listStages } from '../state/stages-store';
import { listEvents, type EventRecord } from '../state/events-store';
import { listDeadLetters, type DeadLetterRecord } from '../state/dead-letters-store';
import { listTasks } from '../state/tasks-store';
import { readTaskLogs } from './task-logs';
import { EVENTS_TOPIC, type Transport } from '../transport/transport';
import { JobEventBus } from '../transport/job-event-bus';
import { context } from '@opentelemetry/api';
import { contextFromTraceparent, currentTraceparent, inSpan, SpanKind, withMessageAttributes } from '../telemetry';
import { RemoteWorkers } from './remote-workers';
import { cancelJob, pauseJob, resumeJob, retryJob, type ControlOutcome } from './control';
import type { EngineContext, RunningTaskAbort } from './after-commit';
import { commit } from './commit';
import { processDeadLetter, type DeadLetter, type DeadLetterOutcome } from './dead-letters';
import { DEFAULT_JANITOR_OPTIONS, sweep, type JanitorOptions, type SweepReport } from '../janitor';
import type { PurgeCounts } from '../state/retention-store';
import { deleteBlobs, deleteJob, type BlobCleanupReport } from './retention';
import { rerunTasks } from './rerun';
import { runBulk } from './bulk-jobs';
import { Outbox } from './outbox';
import { claimStage, type JobMessageOutcome } from './stage-start';
import { createStageTasks, stageDefinitionOf } from './stage-creation';
import { waitUntilEnded } from './job-wait';
import { Schedules, type ScheduleSweepOptions } from '../schedules/schedules';
import { TaskRunner, type TaskMessageOutcome } from './task-runner';
import type { MessageMeta } from '../transport/settle-batch';
import { UnitOfWork } from './unit-of-work';
import { acceptSignal } from './signal-stage';
import { submissionTimeout } from './submission-timeout';
import { jobTypeCatalogue, type JobTypeCatalogue } from './job-types';
import { INLINE_PAYLOADS, type Payloads } from '../payloads/payloads';
import { StoredValues } from './stored-values';
import { definitionOf, versionsInUse, waitingForVersion, type VersionInUse } from './versions';
import type { HostPresence } from './host-presence';
import { workersView } from './workers-view';
import type { WorkerView } from '../../models/workers';

export type { MessageMeta } from '../transport/settle-batch';

/** What the transport knows of a submission besides its body: its Service Bus properties. */
export interface SubmissionOrigin {
  messageId?: string | undefined;
  replyTo?: string | undefined;
  correlationId?: string | undefined;
}

/**
 * Where a submission's receipt goes, if anywhere: the message's replyTo property, else the body's
 * (checked by the same schema: a Service Bus queue name, never one of the engine's own). The
 * correlationId is the message's, else the body's, else the message id. A replyTo that fails the
 * check refuses the submission: its sender would otherwise wait for a receipt that never comes.
 */
function receiptAddress(body: unknown, origin: SubmissionOrigin): { queue: string; correlationId: string | null; messageId: string } | undefined {
  const fromBody = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as { replyTo?: unknown; correlationId?: unknown }) : {};
  const replyTo = origin.replyTo ?? (typeof fromBody.replyTo === 'string' ? fromBody.replyTo : undefined);
  if (replyTo === undefined || replyTo === '') return undefined;
  const queue = parseOrThrow(ReplyToQueue, replyTo, 'replyTo', ['replyTo']);
  const correlationId = origin.correlationId ?? (typeof fromBody.correlationId === 'string' ? fromBody.correlationId : undefined) ?? origin.messageId ?? null;
  // Deterministic: a redelivered submission's receipt is dropped by duplicate detection.
  return { queue, correlationId, messageId: `receipt:${origin.messageId ?? correlationId ?? randomUUID()}` };
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
  /**
   * The engine extends the leases of the handlers it runs while they run (default), so a lease only
   * bounds how long a task held by a host that died waits. false: a lease lives only by the
   * handler's own ctx.heartbeat(), so a handler that hangs also loses its task when it runs out.
   */
  extendLeases?: boolean;
  /** Where values too large for a row go (core/payloads, docs/payloads.md); unset: every value inline, up to the default cap. */
  payloads?: Payloads;
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
  /** The values job and task views link to (`resultRef`, `parametersRef`), streamed by their own routes. */
  readonly values: StoredValues;
  readonly payloads: Payloads;
  /** Every state change goes through it: one transaction, its outbox intents, reported transitions, dispatch. */
  private readonly unitOfWork: UnitOfWork;
  private readonly tasks: TaskRunner;
  private readonly pool: pg.Pool;
  private readonly registry: Registry;
  private readonly logger: Logger;
  private readonly transport: Transport;
  private readonly retentionDays: number;

  /**
   * Job events (every terminal transition and completed stage) as this process publishes them:
   * `machine.events.subscribe(handler)`. Only the in-process transport delivers them here; with
   * Service Bus they go to the coremachine-events topic, where consumers subscribe instead.
   */
  get events(): Pick<JobEventBus, 'subscribe'> {
    const bus = (this.transport as { events?: unknown }).events;
    if (bus instanceof JobEventBus) return bus;
    throw new ConfigurationError(
      `the ${this.transport.name} transport publishes job events to the ${EVENTS_TOPIC} topic: subscribe to the topic, not to machine.events`,
    );
  }

  private constructor(deps: CoreMachineDeps) {
    this.retentionDays = deps.retentionDays ?? 0;
    this.pool = deps.pool;
    this.registry = deps.registry;
    this.logger = deps.logger;
    this.transport = deps.transport;
    this.outbox = new Outbox(deps.pool, deps.transport);
    this.payloads = deps.payloads ?? INLINE_PAYLOADS;
    const context = { registry: deps.registry, logger: deps.logger, payloads: this.payloads };
    this.unitOfWork = new UnitOfWork(deps.pool, this.outbox, context, (tasks) => this.tasks.abort(tasks));
    this.tasks = new TaskRunner(deps.pool, deps.registry, deps.logger, this.unitOfWork, deps.extendLeases ?? true, this.payloads);
    this.remote = new RemoteWorkers(deps.pool, context, this.unitOfWork);
    this.values = new StoredValues(deps.pool, this.payloads);
    this.schedules = new Schedules(
      deps.pool,
      this.unitOfWork,
      deps.registry,
      deps.logger,
      (jobType, parameters, key) => this.submitJob(jobType, parameters, { idempotencyKey: key }),
      deps.schedules,
    );
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
  async submitJob(
    jobType: string,
    parameters: unknown,
    options: {
      idempotencyKey?: string | null | undefined;
      timeoutSeconds?: unknown;
      version?: unknown;
      /** Who and what (models/job-labels.ts): kept as first submitted; a resubmission never renames or relabels the job. */
      name?: string | null | undefined;
      createdBy?: string | null | undefined;
      labels?: Readonly<Record<string, string>> | null | undefined;
      /** Priority and fair share (models/job-priority.ts): kept as first submitted, like the name. */
      priority?: string | null | undefined;
      fairnessKey?: string | null | undefined;
      fairnessWeight?: number | null | undefined;
    } = {},
  ): Promise<{ job: JobView; created: boolean }> {
    // The newest version unless the submitter names one (header CoreMachine-Job-Version, message `version`).
    const version =
      options.version === undefined || options.version === null ? undefined : parseOrThrow(JobVersionInput, options.version, 'job version', ['version']);
    const definition = this.registry.job(jobType, version);
    const timeoutSeconds = submissionTimeout(definition, options.timeoutSeconds);
    const key = options.idempotencyKey ?? undefined;
    if (key !== undefined) parseOrThrow(IdempotencyKey, key, 'Idempotency-Key', ['Idempotency-Key']);
    const identity = parseOrThrow(JobIdentity, { name: options.name, createdBy: options.createdBy, labels: options.labels }, 'job name, createdBy or labels');
    const scheduling = parseOrThrow(
      JobScheduling,
      { priority: options.priority, fairnessKey: options.fairnessKey, fairnessWeight: options.fairnessWeight },
      'job priority or fairness key',
    );
    const parameters_ = parseOrThrow(definition.parameters, parameters, `parameters for job type "${jobType}"`);
    // What jsonb cannot store is refused here, whoever submits (HTTP checks it too; a message, a schedule or code may not).
    refuseUnstorable(`parameters for job type "${jobType}"`, parameters_);
    this.payloads.checkInline(JSON.stringify(parameters_ ?? null), `parameters for job type "${jobType}"`);
    const jobId = computeJobId(jobType, parameters_, key);
    const message: JobQueueMessage = { jobId, jobType, stage: 1 };
    // The submit span is the root of the job's trace: its context is stored with the job.
    return inSpan(
      'coremachine.submit',
      { jobId, jobType },
      context.active(),
      async () => {
        const created = await commit(this.unitOfWork, async ({ client }) => {
          const inserted = await insertJob(client, {
            jobId,
            jobType,
            jobVersion: definition.version,
            totalStages: definition.stages.length,
            parameters: parameters_,
            traceparent: currentTraceparent(),
            idempotencyKey: key,
            timeoutSeconds,
            name: identity.name ?? undefined,
            createdBy: identity.createdBy ?? undefined,
            labels: identity.labels ?? undefined,
            fairShare: fairShareColumns(scheduling),
          });
          if (!inserted.created) return { value: false };
          return {
            value: true,
            intents: [{ kind: 'job', jobId, message }],
            transitions: [{ name: 'JobTransition', attributes: { jobId, jobType, from: 'none', to: 'QUEUED', stage: 1 } }],
          };
        });
        if (created) this.logger.info('job submitted', { jobId, jobType });
        return { job: await this.getJob(jobId), created };
      },
      SpanKind.PRODUCER,
    );
  }

  /**
   * A submission that arrived as a queue message. Invalid ones raise ValidationError (with the zod
   * issues) or UnknownJobTypeError, both non-retryable: the transport dead-letters them and nothing
   * is stored. With a `replyTo` (the message's own Service Bus property, or the body's), the
   * submitter gets a receipt there: accepted with the job id, or refused with the reasons.
   */
  async submitFromMessage(
    body: unknown,
    origin: SubmissionOrigin = {},
  ): Promise<{ job: JobView; created: boolean; signal?: { name: string; delivered: boolean } }> {
    const reply = receiptAddress(body, origin);
    let accepted: { job: JobView; created: boolean; signal?: { name: string; delivered: boolean } };
    try {
      accepted = await this.acceptSubmission(body);
    } catch (error) {
      // Only a refusal is final: anything else is redelivered, and its receipt comes with the answer.
      if (reply && isNonRetryable(error)) {
        const shape = errorToShape(error);
        await this.transport.sendReceipt(
          reply.queue,
          {
            status: 'refused',
            correlationId: reply.correlationId,
            error: { type: shape.type, message: shape.message, ...(shape.issues ? { issues: shape.issues } : {}) },
          },
          reply,
        );
      }
      throw error;
    }
    if (reply) {
      const { job, created, signal } = accepted;
      await this.transport.sendReceipt(
        reply.queue,
        { status: 'accepted', correlationId: reply.correlationId, jobId: job.jobId, jobType: job.jobType, created, ...(signal ? { signal } : {}) },
        reply,
      );
    }
    return accepted;
  }

  private async acceptSubmission(body: unknown): Promise<{ job: JobView; created: boolean; signal?: { name: string; delivered: boolean } }> {
    // `{jobId, signal, payload}` on the same queue delivers a signal, with the HTTP route's answers.
    if (isSignalMessageBody(body)) {
      const message = parseOrThrow(SignalMessage, body, 'signal message: it must be {jobId, signal, payload, replyTo?, correlationId?}');
      const { job, delivered } = await this.deliverSignal(message.jobId, message.signal, message.payload);
      return { job, created: false, signal: { name: message.signal, delivered } };
    }
    const submission = parseOrThrow(
      JobSubmissionMessage,
      body,
      'submission message: it must be {jobType, parameters, idempotencyKey?, timeoutSeconds?, version?, name?, createdBy?, labels?, priority?, fairnessKey?, fairnessWeight?, replyTo?, correlationId?}',
    );
    return this.submitJob(submission.jobType, submission.parameters, {
      idempotencyKey: submission.idempotencyKey,
      timeoutSeconds: submission.timeoutSeconds,
      version: submission.version,
      name: submission.name,
      createdBy: submission.createdBy,
      labels: submission.labels,
      priority: submission.priority,
      fairnessKey: submission.fairnessKey,
      fairnessWeight: submission.fairnessWeight,
    });
  }

  /**
   * Delivers the signal `name` to the job's stage that waits for it (POST jobs/{jobId}/signals/{name}).
   * The payload is checked against that stage's schema first (ValidationError, 400); then the job
   * must be at that stage and still waiting (SignalRefusedError, 409). `delivered` is false for a
   * repeat of a delivered signal with the same payload, which changes nothing; a different payload
   * is refused. The stored payload is the stage's result for the next stage and finalize.
   */
  async deliverSignal(jobId: string, name: string, payload: unknown): Promise<{ job: JobView; delivered: boolean }> {
    const row = await findJob(this.pool, jobId);
    if (!row) throw new JobNotFoundError(jobId);
    const definition = definitionOf(this.registry, row);
    if (!definition) throw new SignalRefusedError(jobId, name, waitingForVersion(this.registry, row) ?? `version ${row.job_version} is not deployed`);
    const waiting = signalStageOf(definition, name);
    if (!waiting) throw new SignalRefusedError(jobId, name, `job type "${row.job_type}" has no stage that waits for it`);
    const checked = parseOrThrow(waiting.definition.signal.payload, payload, `payload for signal "${name}"`);
    refuseUnstorable(`payload for signal "${name}"`, checked);
    this.payloads.checkInline(JSON.stringify(checked ?? null), `payload for signal "${name}"`);
    const signal = { jobId, name, stage: waiting.stage, payload: checked };
    const delivered = await commit(this.unitOfWork, async ({ client, context }) => {
      const accepted = await acceptSignal(client, context, signal);
      return { value: accepted.delivered, ...accepted.after };
    });
    if (!delivered) this.logger.info('signal repeated: already delivered with the same payload', { jobId, signal: name });
    return { job: await this.getJob(jobId), delivered };
  }

  /**
   * `GET jobs/{jobId}?waitSeconds=N`: the job once it has ended, or as it is after N seconds
   * (long-poll, 0 ≤ N ≤ 60; absent or 0 answers at once).
   */
  async waitForJob(jobId: string, query: unknown = {}, signal?: AbortSignal): Promise<JobView> {
    const waitSeconds = parseOrThrow(JobWaitQuery, query, 'job query').waitSeconds ?? 0;
    if (waitSeconds > 0) await waitUntilEnded(this.pool, jobId, { waitSeconds, signal });
    return this.getJob(jobId);
  }

  async getJob(jobId: string): Promise<JobView> {
    const row = await findJob(this.pool, jobId);
    if (!row) throw new JobNotFoundError(jobId);
    const stages = await listStages(this.pool, jobId);
    return buildJobView(row, stages, definitionOf(this.registry, row), waitingForVersion(this.registry, row));
  }

  /**
   * Every registered version of every job type with the JSON Schema of its parameters and signals,
   * the submissions queue's message schemas, and the versions unfinished jobs run.
   */
  async jobTypes(): Promise<JobTypeCatalogue> {
    return { ...jobTypeCatalogue(this.registry), versionsInUse: await versionsInUse(this.pool, this.registry) };
  }

  /** The versions unfinished jobs run that this deployment does not register: those jobs wait. */
  async missingVersions(): Promise<VersionInUse[]> {
    return (await versionsInUse(this.pool, this.registry)).filter((version) => !version.registered);
  }

  /** Newest first, each job with its current stage's counters (the dashboard's progress bars). */
  async listJobs(query: unknown = {}): Promise<JobListPage> {
    const { rows, nextCursor } = await listJobs(this.pool, parseOrThrow(ListJobsQuery, query, 'job list query'));
    return { jobs: await withCurrentStages(this.pool, rows.map(toJobRecord)), nextCursor };
  }

  async listTasks(jobId: string, query: unknown = {}): Promise<TaskRecord[]> {
    const parsed = parseOrThrow(ListTasksQuery, query, 'task list query');
    if (!(await findJob(this.pool, jobId))) throw new JobNotFoundError(jobId);
    return (await listTasks(this.pool, jobId, parsed)).map(toTaskRecord);
  }

  /** A page of one task's log lines (ctx.log), in the order written from `afterSeq`, with what its attempts and its job dropped. */
  async listTaskLogs(jobId: string, taskId: string, query: unknown = {}): Promise<TaskLogPage> {
    return readTaskLogs(this.pool, jobId, taskId, query);
  }

  /**
   * This process as a worker that runs queue tasks: it joins the workers view with its first task
   * batch (the local worker joins at start) and leaves on a clean stop (drain).
   */
  get presence(): HostPresence {
    return this.tasks.presence;
  }

  /** Remote workers and in-process hosts: task types, last claim and heartbeat, tasks held now. */
  async listWorkers(): Promise<WorkerView[]> {
    return workersView(this.pool);
  }

  /** Starts the stage a job message names. Throws on anything that must be redelivered. */
  async processJobMessage(body: unknown, meta: MessageMeta = {}): Promise<JobMessageOutcome> {
    const parsed = JobQueueMessage.safeParse(body);
    if (!parsed.success) {
      throw new MalformedMessageError(`job message does not match JobQueueMessage: ${describeZodError(parsed.error)}`, parsed.error.issues);
    }
    const { jobId, jobType, stage } = parsed.data;
    const attributes = withMessageAttributes({ jobId, jobType, stage }, meta);
    return inSpan('coremachine.stage_start', attributes, contextFromTraceparent(meta.traceparent), async (span) => {
      // A job of a version this deployment lacks waits (core/engine/versions.ts): nothing changes.
      const row = await findJob(this.pool, jobId);
      const waiting = row ? waitingForVersion(this.registry, row) : undefined;
      if (waiting) {
        span.setAttribute('outcome', 'waiting');
        this.logger.warn("job message waits: the job's version is not deployed", { jobId, stage, reason: waiting });
        return { kind: 'waiting', jobId, stage, reason: waiting };
      }
      // The claim commits on its own; the tasks follow in chunks, each its own unit of work.
      const claimed = await commit(this.unitOfWork, async ({ client, context }) => {
        const decided = await claimStage(client, context, parsed.data);
        return { value: decided, ...(decided.kind === 'done' ? decided.after : {}) };
      });
      const outcome =
        claimed.kind === 'done'
          ? claimed.outcome
          : await createStageTasks(this.unitOfWork, this.pool, stageDefinitionOf(this.registry, claimed.job), claimed.job, claimed.stage, claimed.resend);
      span.setAttribute('outcome', outcome.kind);
      if (outcome.kind === 'duplicate' || outcome.kind === 'ignored') {
        this.logger.info(`job message ${outcome.kind}`, { jobId: outcome.jobId, stage: outcome.stage, reason: outcome.reason });
      }
      return outcome;
    });
  }

  /** A batch of task messages (see TaskRunner): one outcome per message, in order. */
  async processTaskMessages(bodies: readonly unknown[], metas: readonly MessageMeta[] = []): Promise<TaskMessageOutcome[]> {
    return this.tasks.process(bodies, metas);
  }

  async cancelJob(jobId: string): Promise<JobView> {
    const aborted = await this.control(cancelJob, jobId);
    this.logger.info('job cancelled', { jobId, abortedTasks: aborted.length });
    return this.getJob(jobId);
  }

  async pauseJob(jobId: string): Promise<JobView> {
    await this.control(pauseJob, jobId);
    this.logger.info('job paused', { jobId });
    return this.getJob(jobId);
  }

  async resumeJob(jobId: string): Promise<JobView> {
    await this.control(resumeJob, jobId);
    this.logger.info('job resumed', { jobId });
    return this.getJob(jobId);
  }

  async retryJob(jobId: string): Promise<JobView> {
    await this.control(retryJob, jobId);
    this.logger.info('job retried', { jobId });
    return this.getJob(jobId);
  }

  /**
   * Targeted re-run (core/engine/rerun.ts): chosen tasks of a finished stage of an ended job run
   * again (by id, by status, by a result field), and the stages after it and finalize are recomputed.
   * `dryRun` answers what would change and changes nothing. 409 for a job that has not ended (or a
   * stage that cannot be re-run), 400 for a request that does not parse.
   */
  async rerunTasks(jobId: string, request: unknown): Promise<RerunOutcome> {
    parseOrThrow(JobId, jobId, 'job id', ['jobId']);
    const parsed = parseOrThrow(RerunRequest, request, 're-run request');
    if (parsed.resultField) refuseUnstorable('re-run resultField.equals', parsed.resultField.equals);
    const done = await commit(this.unitOfWork, async ({ client, context }) => {
      const decided = await rerunTasks(client, context, jobId, parsed);
      return { value: decided, ...decided.after };
    });
    // Blobs first, then the message that lets the stage's tasks run (and write blobs) again.
    const blobs = await deleteBlobs(this.payloads, done.blobKeys);
    if (blobs.blobsLeft > 0) this.logger.warn("deleting a re-run's replaced payload blobs failed; the orphan sweep deletes them later", { jobId, ...blobs });
    const held = done.heldMessage;
    if (held) await commit(this.unitOfWork, () => Promise.resolve({ value: undefined, intents: [held] }));
    return { ...done.outcome, ...(blobs.blobsLeft > 0 ? { blobsLeft: blobs.blobsLeft, blobError: blobs.blobError } : {}), job: await this.getJob(jobId) };
  }

  /**
   * Cancel, retry or delete every job a filter matches (at most `limit` per call, newest first,
   * with a cursor for the rest), each in its own transaction through the one-job action; jobs that
   * cannot take it are listed with the reason. `dryRun` changes nothing.
   */
  async bulkJobs(action: unknown, request: unknown): Promise<BulkOutcome> {
    const { action: parsedAction } = parseOrThrow(BulkParams, { action }, 'bulk action');
    const parsed = parseOrThrow(BulkRequest, request, 'bulk request');
    const apply: Record<BulkAction, (jobId: string) => Promise<unknown>> = {
      cancel: (jobId) => this.control(cancelJob, jobId),
      retry: (jobId) => this.control(retryJob, jobId),
      // Through the one-job delete, which logs what a failed blob delete left.
      delete: (jobId) => this.deleteJob(jobId),
    };
    return runBulk(this.pool, parsedAction, parsed, apply[parsedAction], this.logger);
  }

  /** An operator action in its own unit of work; returns the running handlers it stopped. */
  private async control(
    action: (db: pg.PoolClient, context: EngineContext, jobId: string) => Promise<ControlOutcome>,
    jobId: string,
  ): Promise<readonly RunningTaskAbort[]> {
    return commit(this.unitOfWork, async ({ client, context }) => {
      const { after } = await action(client, context, jobId);
      return { value: after.aborts, ...after };
    });
  }

  /** Marks what a dead-lettered message pointed at FAILED, and records the message. */
  async processDeadLetter(letter: DeadLetter): Promise<DeadLetterOutcome> {
    return commit(this.unitOfWork, async ({ client, context }) => {
      const handled = await processDeadLetter(client, context, letter);
      return { value: handled.outcome, ...handled.after };
    });
  }

  /** Messages no consumer could use, newest first, where an operator sees them. */
  async listDeadLetters(query: unknown = {}): Promise<DeadLetterRecord[]> {
    return listDeadLetters(this.pool, parseOrThrow(ListDeadLettersQuery, query, 'dead-letter list query'));
  }

  /** One janitor sweep; safe to run from several processes at once. */
  async sweep(options: Partial<JanitorOptions> = {}): Promise<SweepReport> {
    const backlog = () => this.transport.backlog?.();
    const deps = { pool: this.pool, logger: this.logger, outbox: this.outbox, unitOfWork: this.unitOfWork, payloads: this.payloads };
    return sweep(deps, { ...DEFAULT_JANITOR_OPTIONS, backlog, retentionDays: this.retentionDays, schedules: () => this.schedules.sweep(), ...options });
  }

  /**
   * What a start owes to work a previous process left behind: messages committed but never sent go
   * out now, and with a transport that keeps messages in memory (lost with the process that held
   * them) every unfinished job's messages are rebuilt from PostgreSQL, expired leases included.
   * Safe beside other running instances: a message sent twice is a duplicate.
   */
  async resumeAfterStart(
    options: Partial<JanitorOptions> = {},
  ): Promise<{ outboxSent: number; resentJobs: number; resentStages: number; requeuedTasks: number }> {
    if (this.transport.durable) return { outboxSent: await this.outbox.sweep(0), resentJobs: 0, resentStages: 0, requeuedTasks: 0 };
    // The queue's backlog is not a reason to wait here: the transport is this process's own and
    // was empty a moment ago, so whatever it holds now is what this sweep just sent from the outbox,
    // not the work the dead process held in memory. Waiting behind it would leave the rest of a
    // stage (or its unfinished creation) unsent until the stall window (minutes) passes.
    const report = await this.sweep({ ...options, outboxAgeMs: 0, stallAfterMs: 0, backlog: () => undefined });
    const resentStages = report.stalled.filter((job) => job.action === 'resent-task-messages').length;
    if (report.resentJobs + resentStages + report.outboxSent > 0) {
      this.logger.info('resumed the work a previous process left', {
        outboxSent: report.outboxSent,
        resentJobs: report.resentJobs,
        resentStages,
        requeuedTasks: report.requeuedTasks,
      });
    }
    return { outboxSent: report.outboxSent, resentJobs: report.resentJobs, resentStages, requeuedTasks: report.requeuedTasks };
  }

  /**
   * Shutdown (SIGTERM, scale-in): waits up to `graceMs` for the handlers running in this process,
   * then aborts those still running and gives their claims back (QUEUED at the same attempt), so
   * another instance runs them at once rather than after their lease. Claiming must already have
   * stopped (the host stops delivering first). The host then leaves the workers view.
   */
  async drain(graceMs: number): Promise<{ finished: number; released: number }> {
    const running = this.tasks.runningCount;
    const deadline = Date.now() + graceMs;
    while (this.tasks.runningCount > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    const released =
      this.tasks.runningCount > 0
        ? await this.tasks.releaseRunning(new Error(`the host is shutting down; the task was given back after a ${graceMs} ms grace period`))
        : 0;
    if (running > 0) this.logger.info('drained on shutdown', { finished: running - released, released, graceMs });
    await this.tasks.presence.leave();
    return { finished: running - released, released };
  }

  /** Deletes a finished job with its stages, tasks, events, dead letters and outbox rows. */
  async deleteJob(jobId: string): Promise<PurgeCounts & BlobCleanupReport> {
    const deleted = await deleteJob(this.unitOfWork, jobId, this.payloads);
    if (deleted.blobsLeft > 0) this.logger.warn("deleting the job's payload blobs failed; the orphan sweep deletes them later", { jobId, ...deleted });
    else this.logger.info('job deleted', { jobId, ...deleted });
    return deleted;
  }

  /** The job's audit trail: ascending from afterId, or with order 'desc' from the newest end (beforeId pages back). */
  async listEvents(jobId: string, query: unknown = {}): Promise<EventRecord[]> {
    const parsed = parseOrThrow(ListEventsQuery, query, 'event list query');
    if (!(await findJob(this.pool, jobId))) throw new JobNotFoundError(jobId);
    return listEvents(this.pool, jobId, parsed);
  }
}
