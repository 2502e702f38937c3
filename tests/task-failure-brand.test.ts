import { TaskFailure } from '../models/task-failure';
import { nextAttemptAt } from '../core/engine/retry-policy';
import type { AnyTaskDefinition } from '../models';

/** A second, separately loaded copy of models/task-failure.ts, as a job package bundling its own models/ would have. */
function otherCopy(): typeof TaskFailure {
  let copy: typeof TaskFailure | undefined;
  jest.isolateModules(() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a fresh module instance is the point
    copy = (require('../models/task-failure') as typeof import('../models/task-failure')).TaskFailure;
  });
  if (!copy) throw new Error('the second copy did not load');
  return copy;
}

test('a TaskFailure from another copy of models/ is recognised by its brand, where instanceof fails', () => {
  const Copy = otherCopy();
  expect(Copy).not.toBe(TaskFailure);
  const failure = new Copy('gone', { nonRetryable: true, retryAfterMs: 5 });
  expect(failure instanceof TaskFailure).toBe(false);
  expect(TaskFailure.is(failure)).toBe(true);
  expect(Copy.is(new TaskFailure('here'))).toBe(true);
});

test('only TaskFailures carry the brand; it stays out of JSON and enumeration', () => {
  class RateLimited extends TaskFailure {}
  expect(TaskFailure.is(new RateLimited('slow down', { retryAfterMs: 1000 }))).toBe(true);
  for (const other of [new Error('plain'), { name: 'TaskFailure', message: 'lookalike', nonRetryable: true }, null, undefined, 'TaskFailure', 42]) {
    expect(TaskFailure.is(other)).toBe(false);
  }
  const failure = new TaskFailure('gone', { nonRetryable: true });
  expect(Object.getOwnPropertySymbols(failure)).toHaveLength(1);
  // Spreading (as a logger or an error serialiser might) copies enumerable symbols only: none.
  expect(Object.getOwnPropertySymbols({ ...failure })).toEqual([]);
  expect(JSON.parse(JSON.stringify(failure))).toEqual({ name: 'TaskFailure', nonRetryable: true });
});

test("the engine's retry policy honours a TaskFailure from another copy of models/ (nonRetryable, retryAfterMs), even as a cause", () => {
  const Copy = otherCopy();
  const definition = { retry: { maxAttempts: 5, initialDelayMs: 1000, backoffFactor: 2, maxDelayMs: 60_000, jitter: 0 } } as unknown as AnyTaskDefinition;
  expect(nextAttemptAt(definition, 1, new Copy('gone for good', { nonRetryable: true }))).toBeUndefined();
  const before = Date.now();
  const retryAt = nextAttemptAt(definition, 1, new Error('wrapped', { cause: new Copy('slow down', { retryAfterMs: 30_000 }) }));
  expect(retryAt).toBeDefined();
  expect((retryAt?.getTime() ?? 0) - before).toBeGreaterThanOrEqual(30_000);
  expect((retryAt?.getTime() ?? 0) - before).toBeLessThan(31_000);
});
