import { loadConfig, type CoreMachineConfig } from '../core/config';
import { unknownOptions, type LocalSettings } from '../core/config-options';
import type { CoreMachine } from '../core/engine/core-machine';
import type { SweepReport } from '../core/janitor';
import { startLocalRuntime, type LocalRuntime } from '../core/local-runtime';
import { createLogger } from '../core/logger';
import { Registry } from '../core/registry';
import type {
  BulkAction,
  BulkOutcome,
  BulkRequest,
  EventRecord,
  JobEvent,
  JobRecord,
  JobView,
  Registration,
  RerunOutcome,
  RerunRequest,
  ScheduleView,
  TaskLogPage,
  TaskRecord,
} from '../models';
import { ENDED_JOB_STATUSES } from '../models';

/** How createCoreMachine runs the engine; every setting not given is read from `env`, then defaults. */
export interface CoreMachineOptions extends LocalSettings {
  /** The job types and schedules to run (what the app's jobs/index.ts exports). */
  registration: Registration;
  /**
   * Apply pending schema migrations when starting; false refuses a database whose schema is not the
   * one this version expects (SchemaVersionError) instead.
   * @default true
   */
  migrate?: boolean;
  /**
   * Where the settings not given here are read from.
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
  /**
   * Receives each log line (one JSON object, at `logLevel` and above).
   * @default a line on process.stderr
   */
  log?: (line: string) => void;
}

export interface SubmitOptions {
  /** Makes the same parameters a new job (the HTTP API's Idempotency-Key header). */
  idempotencyKey?: string;
  /** Shortens the job type's deadline for this job, in seconds from submission. */
  timeoutSeconds?: number;
  /** A display name: up to 200 printable characters. Not part of the job's identity, and kept as first submitted. */
  name?: string;
  /** Who submitted it: up to 200 printable characters. */
  createdBy?: string;
  /** Labels the job list filters by and job events carry: up to 20, keys `[a-z0-9][a-z0-9._/-]*` up to 63 characters, values up to 200. */
  labels?: Record<string, string>;
  /**
   * Claims serve `high` before `normal` before `low` (docs/defining-jobs.md, "Priority and fair share").
   * @default none: the job is not in the fair-share scheme, its tasks run in the order their messages arrive
   */
  priority?: 'high' | 'normal' | 'low';
  /** A tenant or customer: within a priority class, running tasks are shared between keys by weight. Up to 200 printable characters. */
  fairnessKey?: string;
  /**
   * The key's weight against the others' (1–100); needs a fairnessKey.
   * @default 1
   */
  fairnessWeight?: number;
}

export interface WaitOptions {
  /**
   * Give up after this long, with an Error naming the job's status then.
   * @default 30000
   */
  timeoutMs?: number;
  /**
   * What to wait for.
   * @default the job has ended: COMPLETED, COMPLETED_WITH_ERRORS, FAILED or CANCELLED
   */
  until?: (job: JobView) => boolean;
  /**
   * How often the job is read.
   * @default 20
   */
  pollMs?: number;
}

/**
 * The engine in this Node process: the in-process transport and its workers run the jobs of the
 * registration on PostgreSQL. Every method is the engine's own, as the HTTP API calls it; parameters,
 * queries and payloads are validated the same way (a ValidationError when they are wrong).
 */
export interface CoreMachineHost {
  /** True when it runs on the embedded PostgreSQL (no databaseUrl, no DATABASE_URL). */
  readonly embedded: boolean;
  /** The connection string of the database it runs on. */
  readonly databaseUrl: string;
  /** The registered job types, sorted. */
  readonly jobTypes: readonly string[];
  /** Validates and stores a job; the same type and parameters return the existing job (`created: false`). */
  submitJob(jobType: string, parameters: unknown, options?: SubmitOptions): Promise<{ job: JobView; created: boolean }>;
  getJob(jobId: string): Promise<JobView>;
  /** Reads the job until `until` holds (default: it has ended), and returns it. */
  waitForJob(jobId: string, options?: WaitOptions): Promise<JobView>;
  /** `{ status?, jobType?, label?: ['key:value', …], createdBy?, name? (a prefix), limit?, cursor? }`, newest first. */
  listJobs(query?: Record<string, unknown>): Promise<{ jobs: JobRecord[]; nextCursor: string | null }>;
  /** `{ stage?, status? }`. */
  listTasks(jobId: string, query?: Record<string, unknown>): Promise<TaskRecord[]>;
  /** A page of one task's log lines (ctx.log) in the order written: `{ afterSeq?, limit? }`. */
  listTaskLogs(jobId: string, taskId: string, query?: Record<string, unknown>): Promise<TaskLogPage>;
  /** The job's audit trail: every transition, oldest first. */
  listEvents(jobId: string, query?: Record<string, unknown>): Promise<EventRecord[]>;
  /** Delivers a signal to the stage waiting for it; `delivered: false` when the same payload was already received. */
  deliverSignal(jobId: string, name: string, payload: unknown): Promise<{ job: JobView; delivered: boolean }>;
  cancelJob(jobId: string): Promise<JobView>;
  pauseJob(jobId: string): Promise<JobView>;
  resumeJob(jobId: string): Promise<JobView>;
  /** Runs the failed stage of a FAILED job again. */
  retryJob(jobId: string): Promise<JobView>;
  /** Deletes an ended job and all its rows. */
  deleteJob(jobId: string): Promise<void>;
  /** Runs chosen tasks of a finished stage of an ended job again and recomputes the stages after it and finalize; `dryRun` changes nothing. */
  rerunTasks(jobId: string, request: RerunRequest): Promise<RerunOutcome>;
  /** Cancels, retries or deletes every job a filter matches, each on its own; `dryRun` changes nothing. */
  bulkJobs(action: BulkAction, request: BulkRequest): Promise<BulkOutcome>;
  listSchedules(): Promise<ScheduleView[]>;
  pauseSchedule(name: string): Promise<ScheduleView>;
  resumeSchedule(name: string): Promise<ScheduleView>;
  /** Job events (completed, failed, cancelled, a stage completed) as they are published; returns the unsubscribe. */
  onJobEvent(listener: (event: JobEvent) => void | Promise<void>): () => void;
  /** One janitor sweep now: deadlines, expired leases, unsent messages, due schedule ticks, retention. */
  sweep(): Promise<SweepReport>;
  /** Resolves when no message is queued or being handled in this process. */
  idle(): Promise<void>;
  /** Stops the workers (running handlers get `graceMs` to finish, then are given back), then the database. */
  close(graceMs?: number): Promise<void>;
}

export type { SweepReport } from '../core/janitor';

const OWN_OPTIONS = ['registration', 'migrate', 'env', 'log'] as const;

/** The settings of a local host: `env` with the options over it, checked by the one schema. */
export function localConfig(options: Readonly<Record<string, unknown>>, own: readonly string[], env: NodeJS.ProcessEnv): CoreMachineConfig {
  const settings = Object.fromEntries(Object.entries(options).filter(([name]) => !own.includes(name)));
  const unknown = unknownOptions(settings, own);
  if (unknown.length > 0) throw new Error(`invalid configuration: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  return loadConfig(env, settings);
}

/**
 * Starts CoreMachine in this process: the database (the given one, or an embedded PostgreSQL in
 * `dataDir` when there is none), migrations, the engine, the in-process transport and its workers,
 * and the janitor on its interval. What a previous process left unfinished on the same database is
 * resumed. Close it when done; until then the process stays alive.
 */
export async function createCoreMachine(options: CoreMachineOptions): Promise<CoreMachineHost> {
  const config = localConfig(options as unknown as Record<string, unknown>, OWN_OPTIONS, options.env ?? process.env);
  const registry = Registry.from(options.registration);
  const logger = createLogger(config.logLevel, {}, options.log);
  const runtime = await startLocalRuntime(config, registry, logger, { migrate: options.migrate ?? true });
  return hostOf(runtime, registry, config.shutdownGraceMs, config.janitor);
}

/** The public face of a running local runtime (createCoreMachine, coremachine/testing). */
export function hostOf(runtime: LocalRuntime, registry: Registry, defaultGraceMs: number, janitor: CoreMachineConfig['janitor']): CoreMachineHost {
  const machine: CoreMachine = runtime.machine;
  let closing: Promise<void> | undefined;
  return {
    embedded: runtime.database.embedded,
    databaseUrl: runtime.database.connectionString,
    jobTypes: registry.jobTypes(),
    submitJob: (jobType, parameters, submit = {}) => machine.submitJob(jobType, parameters, submit),
    getJob: (jobId) => machine.getJob(jobId),
    waitForJob: (jobId, wait = {}) => waitForJob(machine, jobId, wait),
    listJobs: (query = {}) => machine.listJobs(query),
    listTasks: (jobId, query = {}) => machine.listTasks(jobId, query),
    listTaskLogs: (jobId, taskId, query = {}) => machine.listTaskLogs(jobId, taskId, query),
    listEvents: (jobId, query = {}) => machine.listEvents(jobId, query),
    deliverSignal: (jobId, name, payload) => machine.deliverSignal(jobId, name, payload),
    cancelJob: (jobId) => machine.cancelJob(jobId),
    pauseJob: (jobId) => machine.pauseJob(jobId),
    resumeJob: (jobId) => machine.resumeJob(jobId),
    retryJob: (jobId) => machine.retryJob(jobId),
    deleteJob: async (jobId) => void (await machine.deleteJob(jobId)),
    rerunTasks: (jobId, request) => machine.rerunTasks(jobId, request),
    bulkJobs: (action, request) => machine.bulkJobs(action, request),
    listSchedules: () => machine.schedules.list(),
    pauseSchedule: (name) => machine.schedules.pause(name),
    resumeSchedule: (name) => machine.schedules.resume(name),
    onJobEvent: (listener) => machine.events.subscribe((event) => listener(event)),
    sweep: () => machine.sweep(janitor),
    idle: () => runtime.worker.drain(),
    close: (graceMs = defaultGraceMs) => (closing ??= runtime.close(graceMs)),
  };
}

const ENDED: readonly string[] = ENDED_JOB_STATUSES;

async function waitForJob(machine: CoreMachine, jobId: string, options: WaitOptions): Promise<JobView> {
  const until = options.until ?? ((job: JobView) => ENDED.includes(job.status));
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await machine.getJob(jobId);
    if (until(job)) return job;
    if (Date.now() >= deadline) {
      const stage = job.stages.find((s) => s.stage === job.stage);
      throw new Error(
        `job ${jobId} (${job.jobType}) is still ${job.status} at stage ${job.stage}${stage ? ` "${stage.name}" (${stage.completed}/${stage.total} tasks done)` : ''} after ${timeoutMs} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 20));
  }
}
