import { z } from 'zod';
import { defineJob, defineTask, isSignalStage, MAX_TIMEOUT_SECONDS, type AnyJobDefinition } from '../models';

// Every declared timeout goes through one check, and the job's own deadline survives every builder
// method, whichever order they are called in.

const task = defineTask({ type: 'builder.task', parameters: z.object({ i: z.number() }), handler: ({ i }) => ({ i }) });
type Step = 'stage' | 'waitFor';
const steps: Step[][] = [['stage'], ['waitFor', 'stage'], ['stage', 'waitFor'], ['stage', 'waitFor', 'stage'], ['waitFor', 'waitFor', 'stage']];

function build(jobTimeout: number | undefined, sequence: readonly Step[], stageTimeout?: number): AnyJobDefinition {
  let builder = defineJob({
    type: 'builder.job',
    parameters: z.object({}),
    ...(jobTimeout === undefined ? {} : { timeoutSeconds: jobTimeout }),
  }) as unknown as {
    stage: (s: unknown) => typeof builder;
    waitFor: (s: unknown) => typeof builder;
    finalize: (f: () => unknown) => AnyJobDefinition;
  };
  sequence.forEach((step, index) => {
    const timeout = stageTimeout === undefined ? {} : { timeoutSeconds: stageTimeout };
    builder =
      step === 'stage'
        ? builder.stage({ name: `s${index}`, task, fanOut: () => [{ i: index }], ...timeout })
        : builder.waitFor({ name: `w${index}`, payload: z.object({}), ...timeout });
  });
  return builder.finalize(() => ({}));
}

test.each(steps.map((sequence) => [sequence.join(' → ')] as const))('the job deadline declared in defineJob survives %s', (label) => {
  const sequence = label.split(' → ') as Step[];
  expect(build(60, sequence).timeoutSeconds).toBe(60);
  expect(build(undefined, sequence).timeoutSeconds).toBeUndefined();
  const withStageDeadlines = build(60, sequence, 30);
  expect(withStageDeadlines.timeoutSeconds).toBe(60);
  expect(withStageDeadlines.stages.map((stage) => stage.timeoutSeconds)).toEqual(sequence.map(() => 30));
  expect(withStageDeadlines.stages.map((stage) => (isSignalStage(stage) ? 'waitFor' : 'stage'))).toEqual(sequence);
});

test.each([1.5, 0, -1, Number.NaN, Number.POSITIVE_INFINITY, MAX_TIMEOUT_SECONDS + 1])(
  'a declared timeout of %p is refused the same way by defineJob, stage and waitFor',
  (bad) => {
    const message = new RegExp(`timeoutSeconds must be an integer from 1 to ${MAX_TIMEOUT_SECONDS}`);
    expect(() => build(bad, ['stage'])).toThrow(message);
    expect(() => build(60, ['stage'], bad)).toThrow(message);
    expect(() => build(60, ['waitFor', 'stage'], bad)).toThrow(message);
  },
);

test('a handler may return its result as a plain value or a promise; a synchronous throw is a rejection with the thrown value', async () => {
  const context = {
    jobId: 'j',
    taskId: 't',
    stage: 1,
    taskIndex: 0,
    attempt: 1,
    signal: new AbortController().signal,
    heartbeat: () => Promise.resolve(),
    log: () => undefined,
  };
  await expect(task.handler({ i: 3 }, context)).resolves.toEqual({ i: 3 });
  const throwing = defineTask({
    type: 'builder.throws',
    parameters: z.object({}),
    handler: () => {
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- user code may throw anything; the engine keeps its content
      throw 'not an Error';
    },
  });
  await expect(throwing.handler({}, context)).rejects.toBe('not an Error');
});
