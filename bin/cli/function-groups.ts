import { app } from '@azure/functions';
import type { FunctionRegistration } from '../../core/deployment-budget';
import { registerHttpRoutes } from '../../functions/http-route';
import { httpRoutes } from '../../functions/routes';
import { registerServiceBusTriggers } from '../../functions/servicebus-triggers';
import { registerJanitorTimer } from '../../functions/timer-janitor';

/** The `app` methods that register a function (hook and setup register none). */
const REGISTERING = Object.keys(app).filter((key) => key !== 'hook' && key !== 'setup');

/**
 * The functions the Functions app registers, without a host: the same register calls
 * functions/index.ts makes, each `app.<kind>(name, …)` recorded instead of sent to a host.
 * Importing functions/index.ts itself would also start telemetry and hook the host's shutdown;
 * tests/budget.test.ts checks that this list equals what index.ts registers.
 */
export function registeredFunctions(): FunctionRegistration[] {
  return recordRegistrations(() => {
    registerHttpRoutes(httpRoutes);
    registerServiceBusTriggers();
    registerJanitorTimer();
  });
}

/** Runs `register` with every registering method of `app` replaced by a recorder, then puts them back. */
export function recordRegistrations(register: () => void): FunctionRegistration[] {
  const target = app as unknown as Record<string, unknown>;
  const saved = new Map(REGISTERING.map((key) => [key, target[key]]));
  const recorded: FunctionRegistration[] = [];
  try {
    for (const kind of REGISTERING) target[kind] = (name: string) => void recorded.push({ kind, name });
    register();
  } finally {
    for (const [kind, original] of saved) target[kind] = original;
  }
  return recorded;
}
