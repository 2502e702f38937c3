import { exampleJobs, exampleSchedules } from '../../jobs';
import { Registry } from '../../core/registry';

/** The shipped example jobs, which the local commands run unless a test brings its own. */
export function exampleRegistry(): Registry {
  return new Registry().register(...exampleJobs).registerSchedule(...exampleSchedules);
}
