import { z } from 'zod';
import { checkDeclaredTimeout, MAX_TIMEOUT_SECONDS } from './deadline';
import type { RetryPolicy, StageFailurePolicy } from './task-failure';
import { checkTaskLimits, type TaskConcurrency, type TaskRate } from './task-limits';
import type { TaskLogLevel } from './task-log';

/**
 * Typed job and task declarations. Types flow parameters → task specs → results → next stage →
 * finalize without casts in user code. Handlers are declared with method syntax so a concrete
 * definition is assignable to the erased `AnyTaskDefinition` the registry stores.
 */

/** What a handler gets besides its parameters. */
export interface TaskContext {
  readonly jobId: string;
  readonly taskId: string;
  readonly stage: number;
  readonly taskIndex: number;
  readonly attempt: number;
  /** Aborted when the task is cancelled or its lease is lost: stop work and return. */
  readonly signal: AbortSignal;
  /**
   * Extends the task's lease; long handlers call it so a redelivery does not re-claim them.
   * A function bound to its task, so `const { heartbeat } = ctx` is safe.
   */
  readonly heartbeat: () => Promise<void>;
  /**
   * Writes a line to the task's log, kept with the task (API, CLI, dashboard) and mirrored to the
   * engine's log and Application Insights. Bounded (models/task-log.ts TASK_LOG_LIMITS): past an
   * attempt's cap the oldest lines are dropped and counted; a message too long is cut, fields that
   * are not JSON or too large are left out and the line says why. Never throws. Lines are written
   * with the attempt's outcome, a failed or retried one included. Bound to its task, as `heartbeat` is.
   */
  readonly log: (level: TaskLogLevel, message: string, fields?: Record<string, unknown>) => void;
}

export interface TaskDefinition<P extends z.ZodType = z.ZodType, R = unknown> {
  readonly kind: 'task';
  readonly type: string;
  readonly parameters: P;
  /** How long a claim lasts without a heartbeat before the task may be re-claimed. */
  readonly leaseSeconds?: number;
  /** Default: one attempt, no retry. */
  readonly retry?: RetryPolicy;
  /** 'remote': not sent to the tasks queue; claimed over HTTP by an external worker. */
  readonly execution?: 'queue' | 'remote';
  /** For remote tasks: what a worker's reported result must match. */
  readonly result?: z.ZodType;
  /** Global limit on tasks of this type PROCESSING at once (per key), across every instance. */
  readonly concurrency?: TaskConcurrency<z.output<P>>;
  /** Global limit on how many tasks of this type (per key) start per second. */
  readonly rate?: TaskRate;
  handler(parameters: z.output<P>, context: TaskContext): Promise<R>;
}

export type AnyTaskDefinition = TaskDefinition<z.ZodType, unknown>;

/**
 * A task's lease unless its type declares `leaseSeconds`. Queue tasks: 30 s, since the engine
 * extends the leases of the handlers it runs, so the lease only bounds how long a task held by a
 * host that died waits to be claimed again. Remote tasks: 300 s, since a remote worker renews its
 * own lease by heartbeat and nothing renews it for the worker.
 */
export const DEFAULT_LEASE_SECONDS: Readonly<Record<'queue' | 'remote', number>> = { queue: 30, remote: 300 };

/** The lease of a claim of this task type (unknown types get the default of their execution). */
export function leaseSecondsOf(task: AnyTaskDefinition | undefined, execution: 'queue' | 'remote' = task?.execution ?? 'queue'): number {
  return task?.leaseSeconds ?? DEFAULT_LEASE_SECONDS[execution];
}

/** Results of the previous stage, in task order; read in pages so memory stays flat in N. */
export interface StageResults<R> extends AsyncIterable<R> {
  readonly count: number;
  all(): Promise<R[]>;
}

export type TaskSpecs<T> = Iterable<T> | AsyncIterable<T>;

export interface FanOutContext<JP, Prev> {
  readonly jobId: string;
  readonly stage: number;
  readonly parameters: JP;
  readonly previous: StageResults<Prev>;
}

export interface StageDefinition<JP, Prev, TP extends z.ZodType, TR> {
  readonly kind?: 'tasks';
  readonly name: string;
  readonly task: TaskDefinition<TP, TR>;
  readonly failurePolicy?: StageFailurePolicy;
  /** The stage's deadline, counted from the moment it starts (wall clock: a pause does not stop it). */
  readonly timeoutSeconds?: number;
  /** Turns job parameters and the previous stage's results into this stage's task parameters. */
  fanOut(context: FanOutContext<JP, Prev>): TaskSpecs<z.input<TP>> | Promise<TaskSpecs<z.input<TP>>>;
}

export interface AnyTaskStageDefinition {
  readonly kind?: 'tasks';
  readonly name: string;
  readonly task: AnyTaskDefinition;
  readonly failurePolicy?: StageFailurePolicy;
  readonly timeoutSeconds?: number;
  fanOut(context: FanOutContext<unknown, unknown>): TaskSpecs<unknown> | Promise<TaskSpecs<unknown>>;
}

/**
 * A stage that runs no tasks: it waits for the named signal (POST jobs/{jobId}/signals/{name},
 * `coremachine signal`, or a `{jobId, signal, payload}` submission message). The payload, checked
 * against `payload`, is the stage's one result: `previous` of the next stage or of finalize.
 * The stage is named after its signal.
 */
export interface SignalStageDefinition {
  readonly kind: 'signal';
  readonly name: string;
  readonly signal: { readonly name: string; readonly payload: z.ZodType };
  /** The stage's deadline (enforced like every deadline, not by the signal itself). */
  readonly timeoutSeconds?: number;
}

export type AnyStageDefinition = AnyTaskStageDefinition | SignalStageDefinition;

export function isSignalStage(stage: AnyStageDefinition | undefined): stage is SignalStageDefinition {
  return stage?.kind === 'signal';
}

/** The stage of a job type that waits for this signal (1-based), or undefined. */
export function signalStageOf(
  job: { readonly stages: readonly AnyStageDefinition[] },
  signal: string,
): { stage: number; definition: SignalStageDefinition } | undefined {
  const index = job.stages.findIndex((stage) => isSignalStage(stage) && stage.signal.name === signal);
  const definition = job.stages[index];
  return isSignalStage(definition) ? { stage: index + 1, definition } : undefined;
}

export interface FinalizeContext<JP, Prev> {
  readonly jobId: string;
  readonly parameters: JP;
  readonly previous: StageResults<Prev>;
}

export interface JobDefinition<P extends z.ZodType = z.ZodType, R = unknown> {
  readonly kind: 'job';
  readonly type: string;
  /**
   * Which definition of the type this is (1 unless declared). A job runs every stage, fan-out,
   * schema and finalize of the version it was submitted under until it ends; a deployment may
   * register several versions of a type, and new submissions use the newest.
   */
  readonly version: number;
  readonly description: string;
  readonly parameters: P;
  readonly stages: readonly AnyStageDefinition[];
  /** The whole job's deadline, counted from submission; a submission may shorten it (models/deadline.ts). */
  readonly timeoutSeconds?: number;
  finalize(context: FinalizeContext<z.output<P>, unknown>): R | Promise<R>;
}

export type AnyJobDefinition = JobDefinition<z.ZodType, unknown>;

const TYPE_NAME = /^[a-z][a-z0-9_.-]{0,127}$/;
/** Signal names: what `POST jobs/{jobId}/signals/{name}` accepts in its path (models/api.ts reads it). */
export const SIGNAL_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;

function checkTypeName(kind: string, type: string): void {
  if (!TYPE_NAME.test(type)) {
    throw new TypeError(`${kind} type "${type}" must match ${String(TYPE_NAME)}`);
  }
}

/**
 * A task type that runs outside Functions (long-running or container work): its tasks are not sent
 * to the tasks queue but claimed over HTTP by remote workers. `result` types what they report.
 */
export function defineRemoteTask<P extends z.ZodType, R>(definition: {
  type: string;
  parameters: P;
  result: z.ZodType<R>;
  leaseSeconds?: number;
  retry?: RetryPolicy;
  concurrency?: TaskConcurrency<z.output<P>>;
  rate?: TaskRate;
}): TaskDefinition<P, R> {
  const { result, ...rest } = definition;
  const task = defineTask<P, R>({
    ...rest,
    execution: 'remote',
    handler: () => Promise.reject(new Error(`task type "${definition.type}" runs on remote workers and is claimed over HTTP, never from the tasks queue`)),
  });
  return { ...task, result };
}

export function defineTask<P extends z.ZodType, R>(definition: {
  type: string;
  parameters: P;
  leaseSeconds?: number;
  retry?: RetryPolicy;
  execution?: 'queue' | 'remote';
  concurrency?: TaskConcurrency<z.output<P>>;
  rate?: TaskRate;
  /** May return the result or a promise of it, as `finalize` may. */
  handler: (parameters: z.output<P>, context: TaskContext) => R | Promise<R>;
}): TaskDefinition<P, R> {
  checkTypeName('task', definition.type);
  checkTaskLimits(definition.type, definition.concurrency, definition.rate);
  // A lease that is not a positive, bounded number of seconds would fail every claim at run time.
  if (
    definition.leaseSeconds !== undefined &&
    !(Number.isFinite(definition.leaseSeconds) && definition.leaseSeconds > 0 && definition.leaseSeconds <= MAX_TIMEOUT_SECONDS)
  ) {
    throw new TypeError(`task type "${definition.type}": leaseSeconds must be a number of seconds above 0 and at most ${MAX_TIMEOUT_SECONDS}`);
  }
  if (definition.retry && !(Number.isInteger(definition.retry.maxAttempts) && definition.retry.maxAttempts >= 1)) {
    throw new TypeError(`task type "${definition.type}": retry.maxAttempts must be an integer >= 1`);
  }
  const { handler, type, parameters, leaseSeconds, retry, execution, concurrency, rate } = definition;
  return {
    kind: 'task',
    type,
    parameters,
    ...(leaseSeconds === undefined ? {} : { leaseSeconds }),
    ...(retry === undefined ? {} : { retry }),
    ...(execution === undefined ? {} : { execution }),
    ...(concurrency === undefined ? {} : { concurrency }),
    ...(rate === undefined ? {} : { rate }),
    // Always a promise to the engine, whether the handler returned a value, a promise or threw
    // (whatever it threw is kept as it is: the engine records non-Error throws with their content).
    // An async handler's own promise is passed through: no second promise per task.
    handler: (p, context) => {
      try {
        const result = handler(p, context);
        return result instanceof Promise ? result : Promise.resolve(result);
      } catch (error) {
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- user code may throw anything; its content is kept
        return Promise.reject(error);
      }
    },
  };
}

/** Builder: each `.stage()` fixes the type its successor's `fanOut` receives as `previous`. */
export class JobBuilder<P extends z.ZodType, Prev> {
  constructor(
    private readonly type: string,
    private readonly description: string,
    private readonly parameters: P,
    private readonly stages: readonly AnyStageDefinition[],
    private readonly timeoutSeconds: number | undefined,
    private readonly version: number,
  ) {}

  stage<TP extends z.ZodType, TR>(stage: StageDefinition<z.output<P>, Prev, TP, TR>): JobBuilder<P, TR> {
    if (this.stages.some((existing) => existing.name === stage.name)) {
      throw new TypeError(`job type "${this.type}" already has a stage named "${stage.name}"`);
    }
    checkDeclaredTimeout(`stage "${stage.name}" of job type "${this.type}"`, stage.timeoutSeconds);
    // Erasing the generic types here is what lets user code stay free of casts.
    const erased = stage as unknown as AnyStageDefinition;
    return new JobBuilder<P, TR>(this.type, this.description, this.parameters, [...this.stages, erased], this.timeoutSeconds, this.version);
  }

  /**
   * A stage that waits for the signal `name` instead of running tasks: no task, no message and no
   * timer while it waits. Its payload, validated by `payload`, becomes the one element of
   * `previous` for the next stage (or finalize). `timeoutSeconds` is the stage's deadline.
   */
  waitFor<S extends z.ZodType>(signal: { name: string; payload: S; timeoutSeconds?: number }): JobBuilder<P, z.output<S>> {
    if (!SIGNAL_NAME.test(signal.name)) throw new TypeError(`job type "${this.type}": signal name "${signal.name}" must match ${String(SIGNAL_NAME)}`);
    if (this.stages.some((existing) => existing.name === signal.name)) {
      throw new TypeError(`job type "${this.type}" already has a stage named "${signal.name}"`);
    }
    // One stage per signal name: a delivered signal is stored once per job, under its name.
    if (signalStageOf({ stages: this.stages }, signal.name)) throw new TypeError(`job type "${this.type}" already waits for signal "${signal.name}"`);
    const { timeoutSeconds } = signal;
    checkDeclaredTimeout(`signal "${signal.name}" of job type "${this.type}"`, timeoutSeconds);
    const stage: SignalStageDefinition = {
      kind: 'signal',
      name: signal.name,
      signal: { name: signal.name, payload: signal.payload },
      ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }),
    };
    return new JobBuilder<P, z.output<S>>(this.type, this.description, this.parameters, [...this.stages, stage], this.timeoutSeconds, this.version);
  }

  finalize<R>(finalize: (context: FinalizeContext<z.output<P>, Prev>) => R | Promise<R>): JobDefinition<P, R> {
    if (this.stages.length === 0) throw new TypeError(`job type "${this.type}" needs at least one stage`);
    const erasedFinalize = finalize as unknown as (context: FinalizeContext<z.output<P>, unknown>) => R | Promise<R>;
    return {
      kind: 'job',
      type: this.type,
      version: this.version,
      description: this.description,
      parameters: this.parameters,
      stages: this.stages,
      ...(this.timeoutSeconds === undefined ? {} : { timeoutSeconds: this.timeoutSeconds }),
      finalize: (context) => erasedFinalize(context),
    };
  }
}

export function defineJob<P extends z.ZodType>(definition: {
  type: string;
  description?: string;
  parameters: P;
  /** The whole job's deadline in seconds, from submission (see models/deadline.ts). */
  timeoutSeconds?: number;
  /**
   * Raise it when a deployment changes the type's stages, fan-outs, schemas or finalize while jobs
   * of the old definition may still be running: register both versions until those jobs end.
   * @default 1
   */
  version?: number;
}): JobBuilder<P, never> {
  checkTypeName('job', definition.type);
  checkDeclaredTimeout(`job type "${definition.type}"`, definition.timeoutSeconds);
  const version = definition.version ?? 1;
  if (!(Number.isInteger(version) && version >= 1 && version <= 2_147_483_647)) {
    throw new TypeError(`job type "${definition.type}": version must be a whole number from 1 (got ${String(definition.version)})`);
  }
  return new JobBuilder<P, never>(definition.type, definition.description ?? '', definition.parameters, [], definition.timeoutSeconds, version);
}
