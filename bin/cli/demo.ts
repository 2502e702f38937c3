import type { JobView } from '../../models';
import type { CoreMachineConfig } from '../../core/config';
import { startLocalRuntime } from '../../core/local-runtime';
import type { Logger } from '../../core/logger';
import type { Registry } from '../../core/registry';
import { renderStages } from './progress';
import { flagValue } from './flags';

/** Runs an example job end to end on the local runtime; exit code 0 only when it COMPLETED. */
export async function runDemo(config: CoreMachineConfig, registry: Registry, logger: Logger, args: string[]): Promise<number> {
  const jobType = flagValue(args, '--job') ?? 'hello_world';
  const n = Number(flagValue(args, '--n') ?? 100);
  const parameters =
    jobType === 'word_frequencies'
      ? { topK: 5 }
      : { n };
  const runtime = await startLocalRuntime(config, registry, logger);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    out(`database: ${runtime.database.embedded ? 'embedded PostgreSQL' : 'DATABASE_URL'}; transport: ${runtime.transport.name}`);
    const started = Date.now();
    const { job, created } = await runtime.machine.submitJob(jobType, parameters);
    out(`${created ? 'submitted' : 'already submitted'} ${job.jobType} job ${job.jobId}`);
    let last = '';
    let view: JobView = job;
    for (;;) {
      view = await runtime.machine.getJob(job.jobId);
      const rendered = renderStages(view, registry.job(view.jobType).stages.map((s) => s.name));
      if (rendered !== last) out(rendered);
      last = rendered;
      if (!['QUEUED', 'PROCESSING'].includes(view.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    out(`job ${view.status} in ${Date.now() - started} ms`);
    if (view.error) out(`error: ${JSON.stringify(view.error)}`);
    if (view.result !== null) out(`result: ${JSON.stringify(view.result, null, 2)}`);
    return view.status === 'COMPLETED' ? 0 : 1;
  } finally {
    await runtime.close();
  }
}
