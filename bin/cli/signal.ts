import { UsageError, type CliIo } from './io';
import { jsonFromFlags } from './json-input';
import type { parse as parseFn } from './remote';

type Parse = typeof parseFn;

/**
 * `coremachine signal <jobId> <name> --data JSON | --file F`: delivers a signal to the stage that
 * waits for it. Exit 0 when delivered (or already delivered with the same payload); an API refusal
 * (400 bad payload, 404 unknown job, 409 not waiting) is printed and exits 1.
 */
export async function sendSignal(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { values, positionals, clientFor } = parse(args, { data: { type: 'string' }, file: { type: 'string' } }, ['jobId', 'name']);
  const [jobId, name] = positionals;
  if (!jobId || !name) throw new UsageError('expected <jobId> <name>');
  const data = typeof values.data === 'string' ? values.data : undefined;
  const file = typeof values.file === 'string' ? values.file : undefined;
  const payload = jsonFromFlags({ flag: 'data', value: data }, file);
  const { job, delivered } = await clientFor(io).signal(jobId, name, payload);
  io.out(
    delivered
      ? `signal ${name} delivered: ${job.jobType} job ${job.jobId} is ${job.status} at stage ${job.stage} of ${job.totalStages}\n`
      : `signal ${name} was already delivered with this payload: ${job.jobType} job ${job.jobId} is ${job.status}\n`,
  );
  return 0;
}
