/**
 * `coremachine/azure-functions`: CoreMachine inside an Azure Functions app (Node, programming model v4).
 *
 *   import { app } from '@azure/functions';
 *   import { registerCoreMachine } from 'coremachine/azure-functions';
 *   import { registration } from '../jobs';
 *
 *   registerCoreMachine(app, registration);
 */
import { loadConfig } from '../core/config';
import { unknownOptions, type FunctionsSettings } from '../core/config-options';
import { Registry } from '../core/registry';
import { JANITOR_SCHEDULE } from '../functions/timer-janitor';
import { registerFunctionsApp, type HostApp } from '../functions/register-app';
import type { Registration } from '../models';

/**
 * How the Functions app runs. Every setting is optional: what is not given here is read from the
 * app settings (the environment variable named on each), and what neither gives takes the
 * `@default`. An option given here wins over its app setting; a wrong value is refused when the
 * app registers, naming the option.
 */
export interface CoreMachineFunctionsOptions extends FunctionsSettings {
  /**
   * The janitor timer's schedule: an NCRONTAB expression (six fields, seconds first), or `%NAME%` to
   * read it from the app setting NAME. The Bicep sets `JANITOR_SCHEDULE` to every 20 seconds.
   * @default '%JANITOR_SCHEDULE%'
   */
  janitorSchedule?: string;
  /**
   * Where the settings not given in code are read from.
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
}

const OWN_OPTIONS = ['janitorSchedule', 'env'] as const;

/**
 * Registers CoreMachine in the app: the HTTP API (`/api/jobs`, the control routes, health, the
 * dashboard, remote workers, schedules, signals), the Service Bus triggers of the jobs, tasks and
 * submissions queues and their dead-letter queues, the janitor timer, and the appTerminate hook that
 * drains running tasks and closes the pool on scale-in. Call it once, from the app's entry point.
 *
 * The registration is checked now (duplicate types, schedules' crons and parameters), and so are
 * the options given in code; the engine itself starts on the first invocation, with the database
 * and Service Bus settings of the app (DATABASE_URL, ServiceBusConnection…).
 */
export function registerCoreMachine(app: HostApp, registration: Registration, options: CoreMachineFunctionsOptions = {}): void {
  const { janitorSchedule, env, ...settings } = options;
  const unknown = unknownOptions(settings, OWN_OPTIONS);
  if (unknown.length > 0) throw new Error(`registerCoreMachine: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  if (janitorSchedule !== undefined && (typeof janitorSchedule !== 'string' || janitorSchedule.trim() === '')) {
    throw new Error('invalid configuration: option janitorSchedule: must be an NCRONTAB expression or %APP_SETTING%');
  }
  // The options alone, over no environment: a wrong one fails at registration, while the app
  // settings are read (and judged) when the engine starts, as they always were.
  loadConfig({}, settings);
  registerFunctionsApp(app, {
    registry: Registry.from(registration),
    settings,
    ...(env ? { env } : {}),
    janitorSchedule: janitorSchedule ?? JANITOR_SCHEDULE,
  });
}

export type { HostApp as FunctionsHostApp } from '../functions/register-app';
export type { FunctionsSettings } from '../core/config-options';
