import { registration } from '../../jobs';
import { Registry } from '../../core/registry';

/** The app's registration (jobs/index.ts), which the local commands run unless a test brings its own. */
export function exampleRegistry(): Registry {
  return Registry.from(registration);
}
