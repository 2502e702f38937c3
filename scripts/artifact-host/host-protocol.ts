/**
 * What the fake worker (fake-functions-core.ts, a preload) and the loader (load-app.ts) share. No
 * side effects here: both are bundled on their own, and the preload's must run once.
 */

/** What the @azure/functions library hands to registerFunction (FunctionMetadata in types-core). */
export interface RecordedFunction {
  name: string;
  functionId?: string;
  bindings: Record<string, Record<string, unknown>>;
  retryOptions?: unknown;
}

export interface HostRecord {
  functions: RecordedFunction[];
  /** Hook names in registration order (appStart, appTerminate, preInvocation, …). */
  hooks: string[];
  programmingModel?: { name: string; version: string };
  /** Logs the library sent through the core API (coreApi.log). */
  logs: Array<{ level: string; category: string; message: string }>;
  /** Registrations the worker would have refused. */
  errors: string[];
}

export interface FakeHost {
  record: HostRecord;
  /** The worker locks indexing once the entry point has loaded; later registrations throw. */
  lock(): void;
}

/** Where the preload leaves its FakeHost on globalThis. */
export const FAKE_HOST_KEY = Symbol.for('coremachine.fakeFunctionsHost');

/** The JSON line load-app.js prints. */
export interface LoadReport extends HostRecord {
  main: string;
  /** performance.now() when the entry point had loaded: ms since the process started. */
  loadedMs: number;
  /** CPU time (user + system, all of its threads) the process had used by then. */
  cpuMs: number;
  /** Module files loaded from outside the app folder (and the loader's own): there should be none. */
  modulesOutsideApp: string[];
  /** Module files of the app folder that were loaded, relative to it. */
  modulesLoaded: string[];
  /** Keys of @opentelemetry/api's process-wide registry (trace, metrics, …) after loading. */
  telemetryGlobals: string[];
}
