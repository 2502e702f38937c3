import type { JobTypeCatalogue } from '../../core/engine/job-types';
import { table } from './format';
import { UsageError, type CliIo } from './io';
import type { parse as parseFn } from './remote';

type Parse = typeof parseFn;

/** `coremachine job-types [--json]`: every job type the app registers, its stages and signals. */
export async function listJobTypes(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { values, clientFor } = parse(args, { json: { type: 'boolean' } }, []);
  const catalogue = await clientFor(io).jobTypes();
  if (values.json === true) {
    io.out(`${JSON.stringify(catalogue, null, 2)}\n`);
    return 0;
  }
  const rows = catalogue.jobTypes.map((type) => [
    type.jobType,
    type.stages.map((stage) => (stage.kind === 'signal' ? `⏸ ${stage.signal}` : stage.name)).join(' → '),
    type.description,
  ]);
  io.out(`${table(['TYPE', 'STAGES', 'DESCRIPTION'], rows)}\n`);
  io.out('parameters and signal payloads as JSON Schema: coremachine job-type <type>\n');
  return 0;
}

/** `coremachine job-type <jobType>`: its parameters' and signals' JSON Schemas, what a producer in any language builds against. */
export async function showJobType(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { positionals, clientFor } = parse(args, {}, ['jobType']);
  const catalogue: JobTypeCatalogue = await clientFor(io).jobTypes();
  const wanted = positionals[0] ?? '';
  const type = catalogue.jobTypes.find((candidate) => candidate.jobType === wanted);
  if (!type) throw new UsageError(`no job type "${wanted}" (registered: ${catalogue.jobTypes.map((t) => t.jobType).join(', ') || 'none'})`);
  io.out(`${JSON.stringify(type, null, 2)}\n`);
  return 0;
}
