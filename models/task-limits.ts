/**
 * Global concurrency and rate limits of a task type. Declared on the task
 * definition, checked when it is defined and when it is registered, and enforced by the engine at
 * claim time across every instance and remote worker (core/engine/limits.ts).
 *
 * A limit applies to a **slot key**: `${scope}:${key}`, where the scope is the task type unless
 * several task types share one (`scope: 'geodatabase'`: they protect the same downstream system and
 * must declare the same limit), and the key is `key(parameters)` ('' without a key function).
 */

export interface TaskConcurrency<P = unknown> {
  /** At most this many tasks of the slot key are PROCESSING at once, across all instances. */
  readonly limit: number;
  /** Splits the limit: each key (tenant, target host…) gets `limit` slots of its own. */
  key?(this: void, parameters: P): string;
  /** Task types naming the same scope share its slots; defaults to the task type. */
  readonly scope?: string;
}

export interface TaskRate {
  /** Claims per second per slot key (a token bucket holding at most max(1, perSecond) tokens). */
  readonly perSecond: number;
}

export const MAX_CONCURRENCY_LIMIT = 100_000;
export const MAX_RATE_PER_SECOND = 100_000;
/** One start per 1,000 s at least: an idle bucket is full again within the janitor's hour (core/janitor.ts). */
export const MIN_RATE_PER_SECOND = 0.001;
/** A slot key is stored on every task of a limited type; bounded like other names. */
export const MAX_LIMIT_KEY_LENGTH = 200;
const SCOPE_NAME = /^[a-z][a-z0-9_.-]{0,127}$/;

/** What the engine needs to enforce a task type's limits (undefined fields: not limited that way). */
export interface TaskLimits {
  readonly scope: string;
  /** Its tasks' slot keys come from a key function (otherwise every task of the type has the scope's key). */
  readonly keyed?: boolean;
  readonly limit?: number;
  readonly perSecond?: number;
}

/** Throws a TypeError naming the task type when a declared limit is not usable. */
export function checkTaskLimits(type: string, concurrency: TaskConcurrency | undefined, rate: TaskRate | undefined): void {
  if (concurrency !== undefined) {
    const { limit, key, scope } = concurrency;
    if (!(Number.isInteger(limit) && limit >= 1 && limit <= MAX_CONCURRENCY_LIMIT)) {
      throw new TypeError(`task type "${type}": concurrency.limit must be an integer from 1 to ${MAX_CONCURRENCY_LIMIT}`);
    }
    if (key !== undefined && typeof key !== 'function') throw new TypeError(`task type "${type}": concurrency.key must be a function of the task parameters`);
    if (scope !== undefined && !SCOPE_NAME.test(scope))
      throw new TypeError(`task type "${type}": concurrency.scope "${scope}" must match ${String(SCOPE_NAME)}`);
  }
  if (rate !== undefined) {
    const { perSecond } = rate;
    if (!(typeof perSecond === 'number' && Number.isFinite(perSecond) && perSecond >= MIN_RATE_PER_SECOND && perSecond <= MAX_RATE_PER_SECOND)) {
      throw new TypeError(`task type "${type}": rate.perSecond must be a number from ${MIN_RATE_PER_SECOND} to ${MAX_RATE_PER_SECOND}`);
    }
  }
}

/** The limits the engine enforces for a task definition, or undefined when it has none. */
export function taskLimitsOf(task: { readonly type: string; readonly concurrency?: TaskConcurrency; readonly rate?: TaskRate }): TaskLimits | undefined {
  if (!task.concurrency && !task.rate) return undefined;
  return {
    scope: task.concurrency?.scope ?? task.type,
    ...(task.concurrency ? { limit: task.concurrency.limit } : {}),
    ...(task.concurrency?.key ? { keyed: true } : {}),
    ...(task.rate ? { perSecond: task.rate.perSecond } : {}),
  };
}

/**
 * The slot key of one task, computed once when the task is created. Parameters that fail the
 * schema get the scope's default key: the task fails validation when claimed, under the limit.
 * A key function that throws or returns something unusable is a fan-out error (the job fails).
 */
export function limitKeyOf(
  task: {
    readonly type: string;
    readonly parameters: { safeParse(value: unknown): { success: boolean; data?: unknown } };
    readonly concurrency?: TaskConcurrency;
    readonly rate?: TaskRate;
  },
  spec: unknown,
): string | null {
  const limits = taskLimitsOf(task);
  if (!limits) return null;
  const keyOf = task.concurrency?.key as ((parameters: unknown) => unknown) | undefined;
  if (!keyOf) return `${limits.scope}:`;
  const parsed = task.parameters.safeParse(spec);
  if (!parsed.success) return `${limits.scope}:`;
  const key = keyOf(parsed.data);
  if (typeof key !== 'string' || key.length > MAX_LIMIT_KEY_LENGTH) {
    throw new TypeError(
      `concurrency.key of task type "${task.type}" must return a string of at most ${MAX_LIMIT_KEY_LENGTH} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`,
    );
  }
  return `${limits.scope}:${key}`;
}

/** Task types sharing a scope must agree on its limits: one scope, one set of slots. */
export function sameLimits(a: TaskLimits, b: TaskLimits): boolean {
  return a.scope === b.scope && a.limit === b.limit && a.perSecond === b.perSecond;
}
