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
  const inUse = new Map(catalogue.versionsInUse.map((use) => [`${use.jobType}@${use.version}`, use]));
  const rows = catalogue.jobTypes.map((type) => [
    type.jobType,
    `v${type.version}${type.newest ? '' : ' (older)'}`,
    String(inUse.get(`${type.jobType}@${type.version}`)?.activeJobs ?? 0),
    type.stages.map((stage) => (stage.kind === 'signal' ? `⏸ ${stage.signal}` : stage.name)).join(' → '),
    type.description,
  ]);
  io.out(`${table(['TYPE', 'VERSION', 'ACTIVE', 'STAGES', 'DESCRIPTION'], rows)}\n`);
  for (const missing of catalogue.versionsInUse.filter((use) => !use.registered && use.activeJobs > 0)) {
    io.out(
      `waiting: ${missing.activeJobs} ${missing.jobType} job(s) run v${missing.version}, which this deployment does not register; deploy it again, or cancel them\n`,
    );
  }
  io.out('parameters and signal payloads as JSON Schema: coremachine job-type <type> [--version N]\n');
  return 0;
}

/**
 * `coremachine job-type <jobType> [--version N]`: its parameters' and signals' JSON Schemas, what a
 * producer in any language builds against; the newest version unless one is named.
 */
export async function showJobType(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { positionals, values, clientFor } = parse(args, { version: { type: 'string' } }, ['jobType']);
  const version = values.version === undefined ? undefined : versionOf(String(values.version));
  const catalogue: JobTypeCatalogue = await clientFor(io).jobTypes();
  const wanted = positionals[0] ?? '';
  const versions = catalogue.jobTypes.filter((candidate) => candidate.jobType === wanted);
  if (versions.length === 0) {
    const names = [...new Set(catalogue.jobTypes.map((t) => t.jobType))];
    throw new UsageError(`no job type "${wanted}" (registered: ${names.join(', ') || 'none'})`);
  }
  const type = versions.find((candidate) => (version === undefined ? candidate.newest : candidate.version === version));
  if (!type) throw new UsageError(`job type "${wanted}" has no version ${version} (registered: ${versions.map((t) => `v${t.version}`).join(', ')})`);
  io.out(`${JSON.stringify(type, null, 2)}\n`);
  return 0;
}

function versionOf(text: string): number {
  const version = Number(text);
  if (!/^[0-9]{1,10}$/.test(text) || !Number.isSafeInteger(version) || version < 1)
    throw new UsageError(`--version must be a whole number from 1, not "${text}"`);
  return version;
}
