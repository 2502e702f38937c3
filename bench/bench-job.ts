import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { defineJob, defineTask } from '../models';

export const BENCH_JOB_TYPE = 'bench.noop_three_stages';

/** The unit of work: nothing but returning its index, so the engine's own cost is what is measured. */
export const noopTask = defineTask({
  type: 'bench.noop',
  parameters: z.object({ i: z.number().int() }),
  handler: ({ i }) => Promise.resolve({ i }),
});

const Parameters = z.object({
  n: z.number().int().min(1),
  /** Makes every run's job id distinct (the job id is a hash of type + parameters). */
  runId: z.string(),
  /** Stages 2 and 3 derive their task specs from the previous stage's results (read in pages) instead of from n. */
  fanInFromResults: z.boolean().default(false),
});

function byCount(n: number): Array<{ i: number }> {
  return Array.from({ length: n }, (_, i) => ({ i }));
}

/** Specs one at a time: a stage of a million is never a million objects in memory at once. */
function* countTo(n: number): Iterable<{ i: number }> {
  for (let i = 0; i < n; i++) yield { i };
}

async function* fromResults(previous: AsyncIterable<{ i: number }>): AsyncIterable<{ i: number }> {
  for await (const result of previous) yield { i: result.i };
}

/** Three stages of n no-op tasks; finalize only counts (reading n results would be a fourth pass). */
export const benchJob = defineJob({ type: BENCH_JOB_TYPE, description: 'benchmark: 3 stages x n no-op tasks', parameters: Parameters })
  .stage({ name: 'one', task: noopTask, fanOut: ({ parameters }) => countTo(parameters.n) })
  .stage({
    name: 'two',
    task: noopTask,
    fanOut: ({ parameters, previous }) => (parameters.fanInFromResults ? fromResults(previous) : countTo(parameters.n)),
  })
  .stage({
    name: 'three',
    task: noopTask,
    fanOut: ({ parameters, previous }) => (parameters.fanInFromResults ? fromResults(previous) : countTo(parameters.n)),
  })
  .finalize(({ previous }) => ({ tasksInLastStage: previous.count }));

/** `--stages 1` and `--stages 2`: the same no-op tasks, in fewer stages (the job types differ: a job's stages are its type's). */
export const BENCH_JOB_TYPES_BY_STAGES: Record<number, string> = { 1: 'bench.noop_one_stage', 2: 'bench.noop_two_stages', 3: BENCH_JOB_TYPE };

export const benchOneStageJob = defineJob({ type: 'bench.noop_one_stage', description: 'benchmark: 1 stage x n no-op tasks', parameters: Parameters })
  .stage({ name: 'one', task: noopTask, fanOut: ({ parameters }) => countTo(parameters.n) })
  .finalize(({ previous }) => ({ tasksInLastStage: previous.count }));

export const benchTwoStagesJob = defineJob({ type: 'bench.noop_two_stages', description: 'benchmark: 2 stages x n no-op tasks', parameters: Parameters })
  .stage({ name: 'one', task: noopTask, fanOut: ({ parameters }) => countTo(parameters.n) })
  .stage({
    name: 'two',
    task: noopTask,
    fanOut: ({ parameters, previous }) => (parameters.fanInFromResults ? fromResults(previous) : countTo(parameters.n)),
  })
  .finalize(({ previous }) => ({ tasksInLastStage: previous.count }));

export const SIZED_JOB_TYPE = 'bench.sized_three_stages';

/**
 * Random base64 text, made once: every result is a slice of it. PostgreSQL compresses each value
 * on its own (TOAST), so a repeated slice still costs its full size per row, as real data would.
 */
let padding = '';
function pad(length: number): string {
  if (padding.length < length) padding = randomBytes(Math.ceil((length * 3) / 4) + 3).toString('base64');
  return padding.slice(0, length);
}

/** `npm run bench -- --result-bytes`: a task whose result's JSON is `bytes` long. */
export const sizedTask = defineTask({
  type: 'bench.sized',
  parameters: z.object({ i: z.number().int(), bytes: z.number().int().min(0) }),
  handler: ({ i, bytes }) => Promise.resolve({ i, pad: pad(Math.max(0, bytes - `{"i":${i},"pad":""}`.length)) }),
});

/** Three stages of n tasks returning `resultBytes` each; finalize only counts, as the default job's does. */
export const sizedJob = defineJob({
  type: SIZED_JOB_TYPE,
  description: 'benchmark: 3 stages x n tasks with results of resultBytes each',
  parameters: z.object({ n: z.number().int().min(1), runId: z.string(), resultBytes: z.number().int().min(0) }),
})
  .stage({ name: 'one', task: sizedTask, fanOut: ({ parameters }) => byCount(parameters.n).map(({ i }) => ({ i, bytes: parameters.resultBytes })) })
  .stage({ name: 'two', task: sizedTask, fanOut: ({ parameters }) => byCount(parameters.n).map(({ i }) => ({ i, bytes: parameters.resultBytes })) })
  .stage({ name: 'three', task: sizedTask, fanOut: ({ parameters }) => byCount(parameters.n).map(({ i }) => ({ i, bytes: parameters.resultBytes })) })
  .finalize(({ previous }) => ({ tasksInLastStage: previous.count }));
