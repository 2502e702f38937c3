import { z } from 'zod';
import { defineJob, defineRemoteTask, defineTask, TaskFailure, type AnyJobDefinition } from '../../models';

/** Counts every handler run per task id, so tests can prove each side effect happened once. */
export class SideEffects {
  readonly runs = new Map<string, number>();
  record(taskId: string): void {
    this.runs.set(taskId, (this.runs.get(taskId) ?? 0) + 1);
  }
  get total(): number {
    let sum = 0;
    for (const count of this.runs.values()) sum += count;
    return sum;
  }
  maxPerTask(): number {
    return Math.max(0, ...this.runs.values());
  }
}

/** A hook tests use to hold handlers at a point (barriers, slow tasks). */
export type TaskHook = (taskId: string, index: number, signal: AbortSignal) => Promise<void>;

/** Flipped by tests to model a bug being fixed before an operator retry. */
export const switches = { broken: true };

export function makeTestJobs(effects: SideEffects, hooks: { beforeTask?: TaskHook } = {}) {
  const value = defineTask({
    type: 'test.value',
    parameters: z.object({ index: z.number().int(), value: z.number() }),
    handler: async ({ index, value: v }, ctx) => {
      effects.record(ctx.taskId);
      await hooks.beforeTask?.(ctx.taskId, index, ctx.signal);
      return { index, value: v };
    },
  });

  /** 3 stages × n: values i → 2i → 2i + 1; finalize sums them. */
  const threeStages = defineJob({ type: 'test.three_stages', parameters: z.object({ n: z.number().int().min(0), tag: z.string().optional() }) })
    .stage({ name: 'seed', task: value, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index, value: index })) })
    .stage({ name: 'double', task: value, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ index: r.index, value: r.value * 2 })) })
    .stage({
      name: 'increment',
      task: value,
      async *fanOut({ previous }) {
        for await (const r of previous) yield { index: r.index, value: r.value + 1 };
      },
    })
    .finalize(async ({ previous }) => {
      let sum = 0;
      let count = 0;
      for await (const r of previous) {
        sum += r.value;
        count++;
      }
      return { count, sum };
    });

  /** A first stage with no tasks must advance at once. */
  const zeroTaskStage = defineJob({ type: 'test.zero_task_stage', parameters: z.object({ label: z.string() }) })
    .stage({ name: 'nothing', task: value, fanOut: () => [] })
    .stage({ name: 'one', task: value, fanOut: ({ previous }) => [{ index: previous.count, value: 7 }] })
    .finalize(async ({ previous }) => ({ values: (await previous.all()).map((r) => r.value) }));

  const failing = defineTask({
    type: 'test.failing',
    parameters: z.object({ index: z.number().int(), failAt: z.number().int(), throwKind: z.enum(['error', 'string', 'object']) }),
    handler: async ({ index, failAt, throwKind }, ctx) => {
      effects.record(ctx.taskId);
      await hooks.beforeTask?.(ctx.taskId, index, ctx.signal);
      if (index !== failAt) return { index };
      if (throwKind === 'string') throw 'plain string thrown by task'; // eslint-disable-line @typescript-eslint/only-throw-error
      if (throwKind === 'object') throw { code: 'E_DISK', detail: 'disk full' }; // eslint-disable-line @typescript-eslint/only-throw-error
      throw new RangeError(`task ${index} exploded`);
    },
  });
  const failingJob = defineJob({
    type: 'test.failing_job',
    parameters: z.object({ n: z.number().int().min(1), failAt: z.number().int(), throwKind: z.enum(['error', 'string', 'object']).default('error') }),
  })
    .stage({
      name: 'work',
      task: failing,
      fanOut: ({ parameters: p }) => Array.from({ length: p.n }, (_, index) => ({ index, failAt: p.failAt, throwKind: p.throwKind })),
    })
    .stage({ name: 'never', task: value, fanOut: () => [{ index: 0, value: 0 }] })
    .finalize(() => ({ unreachable: true }));

  const strict = defineTask({
    type: 'test.strict',
    parameters: z.object({ count: z.number().int() }),
    handler: (p, ctx) => {
      effects.record(ctx.taskId);
      return Promise.resolve(p);
    },
  });
  /** The fan-out produces parameters the task's own schema rejects; only the worker can tell. */
  const badTaskParameters = defineJob({ type: 'test.bad_task_parameters', parameters: z.object({ n: z.number().int().min(1) }) })
    .stage({
      name: 'strict',
      task: strict,
      fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, i) => ({ count: (i === 0 ? 'not a number' : i) as unknown as number })),
    })
    .finalize(() => ({ unreachable: true }));

  const fanOutThrows = defineJob({ type: 'test.fan_out_throws', parameters: z.object({ id: z.number() }) })
    .stage({ name: 'ok', task: value, fanOut: () => [{ index: 0, value: 1 }] })
    .stage({
      name: 'broken',
      task: value,
      fanOut: () => {
        throw new Error('fan-out could not list inputs');
      },
    })
    .finalize(() => ({ unreachable: true }));

  /** Yields 6,000 specs (more than one insert chunk), then throws. */
  const fanOutFailsMidway = defineJob({ type: 'test.fan_out_fails_midway', parameters: z.object({ id: z.number() }) })
    .stage({
      name: 'partial',
      task: value,
      *fanOut() {
        for (let index = 0; index < 6000; index++) yield { index, value: index };
        throw new Error('source went away after 6000 items');
      },
    })
    .finalize(() => ({ unreachable: true }));

  const finalizeThrows = defineJob({ type: 'test.finalize_throws', parameters: z.object({ id: z.number() }) })
    .stage({ name: 'ok', task: value, fanOut: () => [{ index: 0, value: 1 }] })
    .finalize(() => {
      throw new TypeError('summary failed');
    });

  /** Fails its first `failTimes` attempts (transiently, or for good with `permanent`), then succeeds. */
  const flaky = defineTask({
    type: 'test.flaky',
    parameters: z.object({ index: z.number().int(), failTimes: z.number().int(), permanent: z.boolean() }),
    retry: { maxAttempts: 3, initialDelayMs: 20, backoffFactor: 2, jitter: 0 },
    handler: async ({ index, failTimes, permanent }, ctx) => {
      effects.record(ctx.taskId);
      await hooks.beforeTask?.(ctx.taskId, index, ctx.signal);
      if (ctx.attempt <= failTimes) {
        if (permanent) throw new TaskFailure(`task ${index} can never succeed`, { nonRetryable: true });
        throw new Error(`transient failure ${ctx.attempt} of task ${index}`);
      }
      return { index, attempt: ctx.attempt };
    },
  });
  const flakyJob = defineJob({
    type: 'test.flaky_job',
    parameters: z.object({
      n: z.number().int().min(1),
      failTimes: z.number().int(),
      permanent: z.boolean().default(false),
      failOnly: z.number().int().optional(),
    }),
  })
    .stage({
      name: 'flaky',
      task: flaky,
      fanOut: ({ parameters: p }) =>
        Array.from({ length: p.n }, (_, index) => ({
          index,
          failTimes: p.failOnly === undefined || p.failOnly === index ? p.failTimes : 0,
          permanent: p.permanent,
        })),
    })
    .finalize(async ({ previous }) => ({ attempts: (await previous.all()).map((r) => r.attempt) }));

  /** A stage that tolerates up to `maxFailures` failed tasks. */
  const tolerantJob = defineJob({
    type: 'test.tolerant_job',
    parameters: z.object({ n: z.number().int().min(1), failing: z.array(z.number().int()) }),
  })
    .stage({
      name: 'tolerant',
      task: failing,
      failurePolicy: { kind: 'tolerate', maxFailures: 2 },
      fanOut: ({ parameters: p }) =>
        Array.from({ length: p.n }, (_, index) => ({ index, failAt: p.failing.includes(index) ? index : -1, throwKind: 'error' as const })),
    })
    .stage({ name: 'after', task: value, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ index: r.index, value: r.index })) })
    .finalize(async ({ previous }) => ({ survivors: (await previous.all()).length }));

  /** Fails at `failAt` while `switches.broken` is true: an operator fixes it and retries. */
  const switchable = defineTask({
    type: 'test.switchable',
    parameters: z.object({ index: z.number().int(), failAt: z.number().int() }),
    handler: async ({ index, failAt }, ctx) => {
      effects.record(ctx.taskId);
      await hooks.beforeTask?.(ctx.taskId, index, ctx.signal);
      if (index === failAt && switches.broken) throw new Error(`task ${index} hit the bug`);
      return { index };
    },
  });
  const switchableJob = defineJob({ type: 'test.switchable_job', parameters: z.object({ n: z.number().int().min(1), failAt: z.number().int() }) })
    .stage({ name: 'first', task: value, fanOut: ({ parameters: p }) => Array.from({ length: p.n }, (_, index) => ({ index, value: index })) })
    .stage({
      name: 'second',
      task: switchable,
      fanOut: async ({ parameters: p, previous }) => (await previous.all()).map((r) => ({ index: r.index, failAt: p.failAt })),
    })
    .finalize(async ({ previous }) => ({ done: (await previous.all()).length }));

  /** Rendering runs on remote workers (e.g. a GPU container) that claim tasks over HTTP. */
  const render = defineRemoteTask({
    type: 'test.render',
    parameters: z.object({ frame: z.number().int() }),
    result: z.object({ frame: z.number().int(), bytes: z.number().int() }),
    leaseSeconds: 60,
    retry: { maxAttempts: 2, initialDelayMs: 0, jitter: 0 },
  });
  const remoteJob = defineJob({ type: 'test.remote_job', parameters: z.object({ frames: z.number().int().min(1) }) })
    .stage({ name: 'plan', task: value, fanOut: ({ parameters }) => Array.from({ length: parameters.frames }, (_, index) => ({ index, value: index })) })
    .stage({ name: 'render', task: render, fanOut: async ({ previous }) => (await previous.all()).map((r) => ({ frame: r.index })) })
    .finalize(async ({ previous }) => ({ totalBytes: (await previous.all()).reduce((sum, r) => sum + r.bytes, 0) }));

  const jobs: AnyJobDefinition[] = [
    threeStages,
    zeroTaskStage,
    failingJob,
    badTaskParameters,
    fanOutThrows,
    fanOutFailsMidway,
    finalizeThrows,
    flakyJob,
    tolerantJob,
    switchableJob,
    remoteJob,
  ];
  return { jobs, threeStages, zeroTaskStage, failingJob, badTaskParameters, fanOutThrows, finalizeThrows, flakyJob, tolerantJob, switchableJob, remoteJob };
}

/** Expected finalize result of test.three_stages for n tasks: Σ (2i + 1) = n². */
export function expectedThreeStageSum(n: number): number {
  return n * n;
}
