import type { app } from '@azure/functions';
import { closeAppContext, configureApp, type AppConfiguration } from './app-context';
import { registerHttpRoutes, type FunctionsApp } from './http-route';
import { httpRoutes } from './routes';
import { registerServiceBusTriggers } from './servicebus-triggers';
import { startTelemetry } from './telemetry-setup';
import { registerJanitorTimer } from './timer-janitor';

/** The `app` of @azure/functions as registerCoreMachine uses it: functions and the terminate hook. */
export type HostApp = FunctionsApp & { hook: Pick<(typeof app)['hook'], 'appTerminate'> };

/**
 * Every function the app registers: the HTTP API (functions/routes.ts), the Service Bus triggers
 * and the janitor's timer. No hook and no telemetry: bin/cli/function-groups.ts records exactly
 * this to count the scale groups, and registerFunctionsApp adds the rest.
 */
export function registerFunctions(target: FunctionsApp, janitorSchedule?: string): void {
  registerHttpRoutes(httpRoutes, target);
  registerServiceBusTriggers(target);
  registerJanitorTimer(target, janitorSchedule);
}

const registeredApps = new WeakSet<object>();

/**
 * What registerCoreMachine does once the options are checked: the app's registry and settings for
 * the shared context, telemetry when configured, every function, and graceful shutdown (scale-in,
 * deployment) giving the pool's connections and the Service Bus links back. The host skips the hook
 * on a forced stop, which the server-side timeouts cover.
 */
export function registerFunctionsApp(target: HostApp, configuration: AppConfiguration & { janitorSchedule?: string | undefined }): void {
  if (registeredApps.has(target)) throw new Error('registerCoreMachine was already called for this app: register CoreMachine once, from the entry point');
  registeredApps.add(target);
  const { janitorSchedule, ...context } = configuration;
  configureApp(context);
  startTelemetry(context.env);
  registerFunctions(target, janitorSchedule);
  target.hook.appTerminate(() => closeAppContext());
}
