import type { AnyJobDefinition } from '../../models';
import type { Queryable } from '../db/pool';
import type { Registry } from '../registry';
import { unfinishedJobVersions } from '../state/jobs-store';

/**
 * A job runs the version of its type it was submitted under. When a deployment does not register
 * that version (it was dropped while jobs of it were still running), the job is not failed and is
 * not run under another definition: its messages wait, visibly, until the version is deployed again
 * or an operator cancels the job. These two read the registry for every such decision.
 */
export interface VersionedJob {
  job_type: string;
  job_version: number;
}

/** The job's own definition, or undefined when this deployment does not register its version. */
export function definitionOf(registry: Registry, job: VersionedJob): AnyJobDefinition | undefined {
  return registry.hasJob(job.job_type, job.job_version) ? registry.job(job.job_type, job.job_version) : undefined;
}

/** Why the job cannot run here, or undefined when its version is registered. */
export function waitingForVersion(registry: Registry, job: VersionedJob): string | undefined {
  if (registry.hasJob(job.job_type, job.job_version)) return undefined;
  const registered = registry.versionsOf(job.job_type);
  return `waiting for version ${job.job_version} of job type "${job.job_type}", which this deployment does not register (registered: ${registered.map((v) => `v${v}`).join(', ') || 'none'}); deploy it again, or cancel the job`;
}

/** A version some unfinished job runs, and whether this registry has it. */
export interface VersionInUse {
  jobType: string;
  version: number;
  /** Jobs that go on by themselves (queued, running, paused). */
  activeJobs: number;
  /** FAILED jobs: they run again only if an operator retries them. */
  failedJobs: number;
  registered: boolean;
}

/**
 * Every (job type, version) an unfinished job runs, against `registry`: what a deployment of that
 * registry would leave waiting. The preflight refuses a deployment that leaves active jobs
 * waiting; the health details and the catalogue show it on a running app.
 */
export async function versionsInUse(db: Queryable, registry: Registry): Promise<VersionInUse[]> {
  return (await unfinishedJobVersions(db)).map((row) => ({
    jobType: row.job_type,
    version: row.job_version,
    activeJobs: row.active,
    failedJobs: row.failed,
    registered: registry.hasJob(row.job_type, row.job_version),
  }));
}
