import path from 'node:path';
import { z } from 'zod';
import type { ErrorShape } from '../models';
import { describeIssues, storableJson, storableText, unstorableJsonIssues } from '../models/storable';

/**
 * A small typed hierarchy. Every error carries its cause; `nonRetryable` tells a transport that
 * redelivering the message cannot help (it is dead-lettered instead of retried ten times).
 */
export class CoreMachineError extends Error {
  readonly type: string = 'CoreMachineError';
  readonly nonRetryable: boolean = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ValidationError extends CoreMachineError {
  override readonly type: string = 'ValidationError';
  override readonly nonRetryable = true;
  constructor(
    message: string,
    readonly issues: unknown[],
  ) {
    super(message);
  }
}

export class UnknownJobTypeError extends CoreMachineError {
  override readonly type = 'UnknownJobTypeError';
  override readonly nonRetryable = true;
  constructor(
    readonly jobType: string,
    known: readonly string[],
  ) {
    super(`unknown job type "${jobType}" (registered: ${known.join(', ') || 'none'})`);
  }
}

/**
 * A job of a version this deployment does not register: it is not the job's fault, and the version
 * may be deployed again, so its messages wait rather than fail (see core/engine/versions.ts).
 */
export class UnknownJobVersionError extends CoreMachineError {
  override readonly type = 'UnknownJobVersionError';
  // A submission naming it is refused for good; a running job of it waits (it is never thrown there).
  override readonly nonRetryable = true;
  constructor(
    readonly jobType: string,
    readonly version: number,
    registered: readonly number[],
  ) {
    super(
      `version ${version} of job type "${jobType}" is not registered by this deployment (registered: ${registered.map((v) => `v${v}`).join(', ') || 'none'})`,
    );
  }
}

export class UnknownTaskTypeError extends CoreMachineError {
  override readonly type = 'UnknownTaskTypeError';
  override readonly nonRetryable = true;
  constructor(
    readonly taskType: string,
    known: readonly string[],
  ) {
    super(`unknown task type "${taskType}" (registered: ${known.join(', ') || 'none'})`);
  }
}

/**
 * A remote worker asked to claim a task type this app does not register, or one that runs from
 * the tasks queue (defineTask, not defineRemoteTask): no task of it will ever be claimable, so the
 * worker hears so (404, with the types it can claim) instead of an empty list forever.
 */
export class UnknownRemoteTaskTypeError extends CoreMachineError {
  override readonly type = 'UnknownRemoteTaskTypeError';
  override readonly nonRetryable = true;
  constructor(
    readonly refused: ReadonlyArray<{ taskType: string; registered: boolean }>,
    readonly remoteTaskTypes: readonly string[],
  ) {
    const reasons = refused.map(({ taskType, registered }) =>
      registered ? `"${taskType}" runs from the tasks queue (defineTask), not on remote workers` : `"${taskType}" is not registered`,
    );
    super(`cannot claim task type ${reasons.join('; ')} (remote task types: ${remoteTaskTypes.join(', ') || 'none'})`);
  }
}

/** The engine was asked for something its configuration does not provide. */
export class ConfigurationError extends CoreMachineError {
  override readonly type = 'ConfigurationError';
  override readonly nonRetryable = true;
}

export class DuplicateRegistrationError extends CoreMachineError {
  override readonly type = 'DuplicateRegistrationError';
  override readonly nonRetryable = true;
}

/** A state change the transition table forbids. Never caught and ignored. */
export class InvalidTransitionError extends CoreMachineError {
  override readonly type = 'InvalidTransitionError';
  constructor(
    readonly entity: 'job' | 'task',
    readonly id: string,
    readonly from: string,
    readonly to: string,
    detail?: string,
  ) {
    super(`invalid ${entity} transition ${from} → ${to} for ${id}${detail ? `: ${detail}` : ''}`);
  }
}

/**
 * A signal the job cannot take: it does not wait for that name (never, not yet, or no longer), or
 * a different payload was delivered under that name before. 409 over HTTP; on the submissions
 * queue it is dead-lettered at once, since redelivering the same message cannot change the answer.
 */
export class SignalRefusedError extends CoreMachineError {
  override readonly type = 'SignalRefusedError';
  override readonly nonRetryable = true;
  constructor(
    readonly jobId: string,
    readonly signal: string,
    detail: string,
  ) {
    super(`job ${jobId} does not accept signal "${signal}": ${detail}`);
  }
}

/**
 * A targeted re-run the job cannot take as asked (core/engine/rerun.ts): the stage never finished
 * or has no tasks, nothing matches, more tasks match than one re-run takes, or the job's version is
 * not deployed. 409 over HTTP: the request is well formed, the job's state says no.
 */
export class RerunRefusedError extends CoreMachineError {
  override readonly type = 'RerunRefusedError';
  override readonly nonRetryable = true;
  constructor(
    readonly jobId: string,
    readonly stage: number,
    detail: string,
  ) {
    super(`job ${jobId} cannot re-run tasks of stage ${stage}: ${detail}`);
  }
}

export class JobNotFoundError extends CoreMachineError {
  override readonly type = 'JobNotFoundError';
  override readonly nonRetryable = true;
  constructor(readonly jobId: string) {
    super(`job ${jobId} does not exist`);
  }
}

export class TaskNotFoundError extends CoreMachineError {
  override readonly type = 'TaskNotFoundError';
  override readonly nonRetryable = true;
  constructor(readonly taskId: string) {
    super(`task ${taskId} does not exist`);
  }
}

export class MalformedMessageError extends CoreMachineError {
  override readonly type = 'MalformedMessageError';
  override readonly nonRetryable = true;
  constructor(
    message: string,
    readonly issues: unknown[] = [],
  ) {
    super(message);
  }
}

export class SchemaVersionError extends CoreMachineError {
  override readonly type = 'SchemaVersionError';
  override readonly nonRetryable = true;
  constructor(
    readonly databaseVersion: number,
    readonly expectedVersion: number,
  ) {
    super(
      databaseVersion < expectedVersion
        ? `database schema is at version ${databaseVersion} but this CoreMachine needs version ${expectedVersion}: run "coremachine db migrate"`
        : `database schema is at version ${databaseVersion}, newer than version ${expectedVersion} that this CoreMachine knows: upgrade CoreMachine`,
    );
  }
}

/**
 * A task's lease ran out (its host died, hung, or lost its network) once too often: each loss
 * re-queues it without using an attempt, and only the last of `maxLosses` fails it.
 */
export class LeaseExpiredError extends CoreMachineError {
  override readonly type = 'LeaseExpiredError';
  override readonly nonRetryable = true;
  constructor(
    taskId: string,
    attempt: number,
    workerId: string | null,
    readonly losses: number,
  ) {
    super(
      `lease on task ${taskId} (attempt ${attempt}${workerId ? `, worker ${workerId}` : ''}) expired ${losses} time(s): the host running it was lost or stopped renewing each time`,
    );
  }

  toShape(where: { stage: number; taskId: string }): ErrorShape {
    return { type: this.type, message: this.message, ...where, leaseLosses: this.losses };
  }
}

/**
 * A job or its current stage ran past its deadline (models/deadline.ts). It is the job's recorded
 * error and the reason its running handlers' signals are aborted with.
 */
export class DeadlineExceededError extends CoreMachineError {
  override readonly type = 'DeadlineExceededError';
  override readonly nonRetryable = true;
  constructor(
    readonly scope: 'job' | 'stage',
    readonly stage: number,
    readonly deadline: Date,
    readonly elapsedMs: number,
  ) {
    super(`${scope === 'job' ? 'the job' : `stage ${stage}`} passed its deadline (${deadline.toISOString()}) after ${elapsedMs} ms`);
  }

  toShape(): ErrorShape {
    return { type: this.type, message: this.message, stage: this.stage, scope: this.scope, deadline: this.deadline.toISOString(), elapsedMs: this.elapsedMs };
  }
}

/**
 * A unit of work declared to send one statement (run without BEGIN and COMMIT) tried a second: a
 * bug in the caller's declaration. The second statement is not sent.
 */
export class SingleStatementError extends CoreMachineError {
  override readonly type = 'SingleStatementError';
  constructor() {
    super('a single-statement unit of work tried to send a second statement; it would not be atomic with the first, so it was not sent');
  }
}

/** A claim that is no longer current (lease expired and re-claimed, task cancelled or finished). */
export class LeaseLostError extends CoreMachineError {
  override readonly type = 'LeaseLostError';
  override readonly nonRetryable = true;
  constructor(taskId: string) {
    super(`the claim on task ${taskId} is no longer current: its lease expired and it was re-claimed, or the task was cancelled or finished`);
  }
}

/** Errors raised by user code, recorded on the task and job with the original as cause. */
export class TaskValidationError extends ValidationError {
  override readonly type = 'TaskValidationError';
}

export class TaskHandlerError extends CoreMachineError {
  override readonly type = 'TaskHandlerError';
}

export class FanOutError extends CoreMachineError {
  override readonly type = 'FanOutError';
}

export class FinalizeError extends CoreMachineError {
  override readonly type = 'FinalizeError';
}

/** Turns anything thrown into an Error, keeping the content of non-Error throws. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  let content: string;
  try {
    content = typeof thrown === 'string' ? thrown : (JSON.stringify(thrown) ?? String(thrown));
  } catch {
    // A value JSON cannot encode (cycle, BigInt) is still described, never lost.
    content = String(thrown);
  }
  const error = new Error(`non-Error thrown: ${content}`);
  error.name = 'NonErrorThrownError';
  return error;
}

const MAX_CAUSE_DEPTH = 5;

export function errorToShape(thrown: unknown, where: { stage?: number; taskId?: string } = {}, depth = 0): ErrorShape {
  const error = coerceError(thrown);
  // An error is recorded whatever its text holds: what jsonb cannot store is made visible instead.
  const shape: ErrorShape = {
    type: storableText(error instanceof CoreMachineError ? error.type : error.name || 'Error'),
    message: storableText(withoutHostPaths(thrown, error.message || String(error))),
  };
  if (where.stage !== undefined) shape.stage = where.stage;
  if (where.taskId !== undefined) shape.taskId = where.taskId;
  if (error instanceof ValidationError || error instanceof MalformedMessageError) shape.issues = storableJson(error.issues);
  if (error.cause !== undefined && depth < MAX_CAUSE_DEPTH) shape.cause = errorToShape(error.cause, {}, depth + 1);
  return shape;
}

/**
 * A recorded error is read by whoever holds the function key, so it must not map the host: Node's
 * system errors name the absolute path they failed on ("ENOENT: …, realpath '/srv/app/data/x'"),
 * and any error may quote the app's own folder. Those become `…/x` and `<app>`.
 */
function withoutHostPaths(thrown: unknown, message: string): string {
  let text = message;
  // Read off the thrown value itself: an error from another realm (a VM context) is not an Error here.
  const system = typeof thrown === 'object' && thrown !== null ? (thrown as { path?: unknown; dest?: unknown }) : {};
  for (const named of [system.path, system.dest]) {
    if (typeof named === 'string' && path.isAbsolute(named) && named.length > 1) text = text.split(named).join(`…/${path.basename(named)}`);
  }
  for (const folder of appFolders()) if (text.includes(folder)) text = text.split(folder).join('<app>');
  return text;
}

let folders: string[] | undefined;
/** The working directory and the folder this code runs from, longest first (one may hold the other). */
function appFolders(): string[] {
  folders ??= [...new Set([process.cwd(), path.resolve(__dirname, '..')])].filter((folder) => folder.length > 1).sort((a, b) => b.length - a.length);
  return folders;
}

/**
 * The longest error message recorded in a task, a job's error and the event trail (a remote
 * worker's report is refused beyond it; an in-process error is cut to it): one handler's 10 MB
 * message must not be copied into every row that mentions it.
 */
export const MAX_RECORDED_MESSAGE_LENGTH = 8 * 1024;

/** The shape with every message (its causes' too) cut to MAX_RECORDED_MESSAGE_LENGTH, marked where cut. */
export function boundedErrorShape(shape: ErrorShape): ErrorShape {
  const bounded: ErrorShape = { ...shape, message: truncateMessage(shape.message) };
  if (shape.cause) bounded.cause = boundedErrorShape(shape.cause);
  return bounded;
}

function truncateMessage(message: string): string {
  if (message.length <= MAX_RECORDED_MESSAGE_LENGTH) return message;
  const marker = ` … [truncated ${message.length} characters to ${MAX_RECORDED_MESSAGE_LENGTH}]`;
  return message.slice(0, MAX_RECORDED_MESSAGE_LENGTH - marker.length) + marker;
}

/** The first error of this class in the cause chain (the error itself first), a few links deep. */
/** The first error in the cause chain that passes `matches` (e.g. TaskFailure.is, or an instanceof check). */
export function findCause<T extends Error>(error: unknown, matches: (candidate: unknown) => candidate is T): T | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < MAX_CAUSE_DEPTH; current = current.cause, depth++) {
    if (matches(current)) return current;
  }
  return undefined;
}

export function isNonRetryable(error: unknown): boolean {
  return error instanceof CoreMachineError && error.nonRetryable;
}

/**
 * The one way input is checked wherever it enters (HTTP paths and queries, code calling the engine,
 * messages): parsed by its schema, or a ValidationError "invalid <what>: …" carrying the zod
 * issues, with `path` prefixed when the input is one named part of a larger request.
 */
export function parseOrThrow<T extends z.ZodType>(schema: T, input: unknown, what: string, path: readonly PropertyKey[] = []): z.output<T> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issues = path.length === 0 ? parsed.error.issues : parsed.error.issues.map((issue) => ({ ...issue, path: [...path, ...issue.path] }));
  throw new ValidationError(`invalid ${what}: ${describeZodError(parsed.error)}`, issues);
}

/**
 * Refuses, as a ValidationError with the issues, input PostgreSQL cannot store (models/storable.ts),
 * whoever supplies it: HTTP checks bodies at the edge, but parameters also come by message, from
 * schedules and from code.
 */
export function refuseUnstorable(what: string, value: unknown): void {
  const issues = unstorableJsonIssues(value);
  if (issues.length > 0) throw new ValidationError(`invalid ${what}: ${describeIssues(issues)}`, issues);
}

/** zod issues as one readable line ("✖ Invalid input: expected number → at n"); the issues themselves travel separately. */
export function describeZodError(error: z.ZodError): string {
  return z.prettifyError(error).replace(/\s*\n\s*/g, ' ');
}

export class ScheduleNotFoundError extends CoreMachineError {
  override readonly type = 'ScheduleNotFoundError';
  override readonly nonRetryable = true;
  constructor(
    readonly scheduleName: string,
    known: readonly string[],
  ) {
    super(`schedule "${scheduleName}" is not declared (declared: ${known.join(', ') || 'none'})`);
  }
}
