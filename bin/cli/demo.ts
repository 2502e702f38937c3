import { readFileSync } from 'node:fs';
import type { JobView } from '../../models';
import type { CoreMachineConfig } from '../../core/config';
import { startLocalRuntime } from '../../core/local-runtime';
import type { Logger } from '../../core/logger';
import type { Registry } from '../../core/registry';
import { formatDuration } from './format';
import { UsageError, type CliIo } from './io';
import type { LocalArgs } from './local-args';
import { ProgressDisplay, progressMilestone, renderStages } from './progress';
import { schemaLine } from './schema-line';

const RUNNING = ['QUEUED', 'PROCESSING'];

/** --params JSON, --file F, --n N (hello_world's shorthand), or the example's defaults. */
export function demoParameters(jobType: string, values: LocalArgs['values']): unknown {
  const given = ['params', 'file', 'n'].filter((name) => values[name] !== undefined);
  if (given.length > 1) throw new UsageError(`give at most one of --n, --params and --file (got ${given.map((g) => `--${g}`).join(', ')})`);
  const { params, file, n } = values;
  if (typeof n === 'string') {
    if (!/^\d+$/.test(n)) throw new UsageError(`--n must be a count of tasks written in decimal digits, got ${JSON.stringify(n)}`);
    return { n: Number(n) };
  }
  if (typeof params === 'string' || typeof file === 'string') {
    let text: string;
    try {
      text = typeof params === 'string' ? params : readFileSync(file as string, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read --file ${String(file)}: ${error instanceof Error ? error.message : String(error)}`);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new UsageError(
        `${typeof params === 'string' ? '--params' : `--file ${String(file)}`} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
  if (jobType === 'word_frequencies') return { topK: 5 };
  return { n: 100 };
}

/** Runs an example job end to end on the local runtime; exit code 0 only when it COMPLETED. */
export async function runDemo(config: CoreMachineConfig, registry: Registry, logger: Logger, args: LocalArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const jobType = typeof args.values.job === 'string' ? args.values.job : 'hello_world';
  const parameters = demoParameters(jobType, args.values);
  // An unknown type is known before the database starts: say so at once.
  const stageNames = registry.job(jobType).stages.map((s) => s.name);
  const out = (line: string) => io.out(`${line}\n`);
  const runtime = await startLocalRuntime(config, registry, logger, { migrate: args.values['no-migrate'] !== true });
  try {
    out(
      `database: ${runtime.database.embedded ? 'embedded PostgreSQL' : 'DATABASE_URL'}; ${schemaLine(runtime.database)}; transport: ${runtime.transport.name}`,
    );
    const timeout = args.values['timeout-seconds'];
    const { job, created } = await runtime.machine.submitJob(jobType, parameters, typeof timeout === 'string' ? { timeoutSeconds: timeout } : {});
    out(`${created ? 'submitted' : 'already submitted'} ${job.jobType} job ${job.jobId}`);
    const display = new ProgressDisplay(io);
    let view: JobView = job;
    for (;;) {
      view = await runtime.machine.getJob(job.jobId);
      display.show(renderStages(view, stageNames), progressMilestone(view));
      if (!RUNNING.includes(view.status)) break;
      if (signal.aborted) {
        out(`interrupted: job ${view.jobId} is ${view.status}; run the same demo again to follow it to the end`);
        return 130;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The job's own time, not this run's: a re-run finds the job finished long ago.
    out(`job ${view.status} in ${formatDuration(view.createdAt.toISOString(), view.finishedAt?.toISOString() ?? null)}`);
    if (view.error) out(`error: ${JSON.stringify(view.error)}`);
    if (view.result !== null) out(`result: ${JSON.stringify(view.result, null, 2)}`);
    return view.status === 'COMPLETED' ? 0 : 1;
  } finally {
    await runtime.close();
  }
}
