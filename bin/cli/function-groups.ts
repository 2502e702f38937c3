import type { FunctionRegistration } from '../../core/deployment-budget';
import type { FunctionsApp } from '../../functions/http-route';
import { registerFunctions } from '../../functions/register-app';

/**
 * The functions the Functions app registers, without a host: the same registerFunctions call
 * registerCoreMachine makes, each `app.<kind>(name, …)` recorded instead of sent to a host.
 * Registering through functions/index.ts itself would also start telemetry and hook the host's
 * shutdown; tests/budget.test.ts checks that this list equals what index.ts registers.
 */
export function registeredFunctions(): FunctionRegistration[] {
  return recordRegistrations((target) => registerFunctions(target));
}

/** Runs `register` against a stand-in `app` that records each registration instead of making it. */
export function recordRegistrations(register: (target: FunctionsApp) => void): FunctionRegistration[] {
  const recorded: FunctionRegistration[] = [];
  const recorder = (kind: string) => (name: string) => void recorded.push({ kind, name });
  register({ http: recorder('http'), serviceBusQueue: recorder('serviceBusQueue'), timer: recorder('timer') });
  return recorded;
}
