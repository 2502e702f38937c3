/**
 * The brand every TaskFailure carries. `Symbol.for` gives the same symbol in every copy of this
 * module, so a job package bundling its own copy of models/ still throws failures the engine
 * recognises — `instanceof` would not, since each copy has its own class.
 */
const TASK_FAILURE_BRAND = Symbol.for('coremachine.TaskFailure');

/**
 * What a handler throws to steer retries: `nonRetryable` fails the task at once, `retryAfterMs`
 * overrides the backoff for the next attempt. Anything else thrown is retryable by the task
 * type's retry policy. Lives in models/ so job types never import the engine. Check for it with
 * `TaskFailure.is(error)`, not `instanceof`.
 */
export class TaskFailure extends Error {
  readonly nonRetryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: { nonRetryable?: boolean; retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'TaskFailure';
    this.nonRetryable = options.nonRetryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    // Not enumerable: the brand is for recognition only and never shows in logs or stored errors.
    Object.defineProperty(this, TASK_FAILURE_BRAND, { value: true, enumerable: false });
  }

  /** True for a TaskFailure from any copy of models/ (a subclass's too). */
  static is(error: unknown): error is TaskFailure {
    return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[TASK_FAILURE_BRAND] === true;
  }
}

/** Exponential backoff with jitter: delay(n) = min(maxDelayMs, initialDelayMs × factor^(n-1)) ± jitter. */
export interface RetryPolicy {
  /** Total attempts including the first; 1 means no retry. */
  maxAttempts: number;
  initialDelayMs?: number;
  backoffFactor?: number;
  maxDelayMs?: number;
  /** Fraction of the delay randomised (0–1); spreads retries so they do not arrive together. */
  jitter?: number;
}

/** Fail fast (default), or tolerate some failed tasks: the job then ends COMPLETED_WITH_ERRORS. */
export type StageFailurePolicy = { kind: 'failFast' } | { kind: 'tolerate'; maxFailures?: number; maxFailureRatio?: number };

export function maxToleratedFailures(policy: StageFailurePolicy | undefined, total: number): number {
  if (!policy || policy.kind === 'failFast') return 0;
  const byCount = policy.maxFailures ?? Number.POSITIVE_INFINITY;
  const byRatio = policy.maxFailureRatio === undefined ? Number.POSITIVE_INFINITY : Math.floor(policy.maxFailureRatio * total);
  const limit = Math.min(byCount, byRatio);
  return Number.isFinite(limit) ? Math.max(0, limit) : total;
}

export function retryDelayMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const initial = policy.initialDelayMs ?? 1000;
  const factor = policy.backoffFactor ?? 2;
  const max = policy.maxDelayMs ?? 5 * 60_000;
  const base = Math.min(max, initial * factor ** Math.max(0, attempt - 1));
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0.2));
  return Math.max(0, Math.round(base * (1 - jitter + 2 * jitter * random())));
}
