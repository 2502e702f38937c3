import type { AnyJobDefinition } from './job-definition';
import type { ScheduleDefinition } from './schedule-definition';

/**
 * What an app runs: its job types and the schedules that submit them. jobs/index.ts declares the
 * app's one Registration; the Functions app, `coremachine dev`/`demo` and the tests all build their
 * registry from it (core/registry.ts `Registry.from`), so a job type or schedule is wired once.
 * Plain data, so jobs/ never imports the engine.
 */
export interface Registration {
  readonly jobs: readonly AnyJobDefinition[];
  /** Each names a job type of `jobs`; registered after them and checked against them. */
  readonly schedules: readonly ScheduleDefinition[];
}
