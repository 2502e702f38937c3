import { Registry } from '../../core/registry';
import { registration } from '../../jobs';
import type { AnyJobDefinition } from '../../models';

/**
 * The app's registration (jobs/index.ts) with a test's own job types registered on top: the one
 * way tests build a registry that includes the shipped jobs and schedules.
 */
export function appRegistry(...testJobs: AnyJobDefinition[]): Registry {
  return Registry.from(registration, { jobs: testJobs });
}

/** The shipped job types, for tests that walk them (parameters, type names). */
export const shippedJobs = registration.jobs;
