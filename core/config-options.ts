/**
 * The settings a host can be given in code (registerCoreMachine, createCoreMachine,
 * createTestKit), each the twin of one environment variable of core/config.ts. An option given in
 * code wins over its variable; both are checked by the same zod schema, so a wrong option is
 * refused as clearly as a wrong variable, by its option name. The defaults below are the schema's
 * (tests/package-entry.test.ts checks every `@default` tag against loadConfig({})).
 */

/** Settings every host reads: the database, its pool, logging, retention and the janitor's windows. */
export interface EngineSettings {
  /**
   * PostgreSQL connection string (`DATABASE_URL`). In Azure it is required; locally, without one,
   * an embedded PostgreSQL is started in `dataDir`.
   * @default process.env.DATABASE_URL
   */
  databaseUrl?: string;
  /**
   * `'entra'`: the password is a Microsoft Entra access token of the app's identity (Azure);
   * `'password'`: it is in the connection string (`DATABASE_AUTH`).
   * @default 'password'
   */
  databaseAuth?: 'password' | 'entra';
  /**
   * Finished jobs older than this many days are deleted by the janitor; 0 keeps everything (`COREMACHINE_RETENTION_DAYS`).
   * @default 30
   */
  retentionDays?: number;
  /**
   * Connections per process, 1–200 (`PG_POOL_MAX`).
   * @default 10
   */
  poolMax?: number;
  /**
   * How long to wait for a pooled connection before failing transiently, 100–120000 ms (`PG_CONNECT_TIMEOUT_MS`).
   * @default 10000
   */
  connectTimeoutMs?: number;
  /**
   * Named prepared statements; false behind a pooler in transaction mode that cannot track them (`COREMACHINE_PREPARED_STATEMENTS`).
   * @default true
   */
  preparedStatements?: boolean;
  /**
   * `'debug' | 'info' | 'warn' | 'error' | 'silent'` (`LOG_LEVEL`).
   * @default 'info'
   */
  logLevel?: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /**
   * Catch-up window of the schedules that declare none, in seconds (`SCHEDULE_CATCH_UP_SECONDS`).
   * @default one tick interval of each schedule
   */
  scheduleCatchUpSeconds?: number;
  /**
   * The most tasks one queue message carries, 1–64 (`COREMACHINE_MAX_PACKED_TASKS`): a stage's
   * tasks go out in packs that grow with its chunks up to this (docs/architecture.md, "Packed task
   * messages"); 1 sends a message per task.
   * @default 16
   */
  maxPackedTasks?: number;
  /**
   * A job with no event for this long is examined by the janitor, 10 s to 7 days (`JANITOR_STALL_AFTER_SECONDS`).
   * @default 300
   */
  janitorStallAfterSeconds?: number;
  /**
   * Outbox rows older than this were not sent by their writer and are sent by the janitor (`JANITOR_OUTBOX_AGE_SECONDS`).
   * @default 5
   */
  janitorOutboxAgeSeconds?: number;
  /**
   * Rows one janitor step handles per sweep (`JANITOR_BATCH_SIZE`).
   * @default 500
   */
  janitorBatchSize?: number;
  /**
   * Leases a task may lose to hosts that died before it fails with LeaseExpired (`JANITOR_MAX_LEASE_LOSSES`).
   * @default 3
   */
  janitorMaxLeaseLosses?: number;
  /**
   * On shutdown, how long running handlers may finish before their tasks are given back, in seconds (`COREMACHINE_SHUTDOWN_GRACE_SECONDS`).
   * @default 20
   */
  shutdownGraceSeconds?: number;
}

/** Settings of the Functions app only. */
export interface FunctionsSettings extends EngineSettings {
  /**
   * A bearer token remote workers must send besides the function key; unset or empty: the function key suffices (`COREMACHINE_WORKER_TOKEN`).
   * @default undefined
   */
  workerToken?: string;
}

/** Settings of a process that runs the workers itself (createCoreMachine, createTestKit, `coremachine dev`). */
export interface LocalSettings extends EngineSettings {
  /**
   * Where the embedded PostgreSQL keeps its data when there is no `databaseUrl` (`COREMACHINE_DATA_DIR`).
   * @default '.coremachine'
   */
  dataDir?: string;
  /**
   * Port of the embedded PostgreSQL (`COREMACHINE_EMBEDDED_PG_PORT`).
   * @default 54329
   */
  embeddedPgPort?: number;
  /**
   * Task messages one worker receives at a time (`TASK_BATCH_SIZE`).
   * @default 32
   */
  taskBatchSize?: number;
  /**
   * Task handlers running at once in this process (`TASK_CONCURRENCY`).
   * @default 8
   */
  taskConcurrency?: number;
  /**
   * Job messages (stage starts) handled at once in this process (`JOB_CONCURRENCY`).
   * @default 2
   */
  jobConcurrency?: number;
  /**
   * How often the in-process janitor sweeps, in seconds (`COREMACHINE_JANITOR_INTERVAL_SECONDS`).
   * @default 10
   */
  janitorIntervalSeconds?: number;
}

/** Every option, by name, and the environment variable it overrides. */
export const SETTING_VARIABLES = {
  databaseUrl: 'DATABASE_URL',
  databaseAuth: 'DATABASE_AUTH',
  retentionDays: 'COREMACHINE_RETENTION_DAYS',
  poolMax: 'PG_POOL_MAX',
  connectTimeoutMs: 'PG_CONNECT_TIMEOUT_MS',
  preparedStatements: 'COREMACHINE_PREPARED_STATEMENTS',
  logLevel: 'LOG_LEVEL',
  scheduleCatchUpSeconds: 'SCHEDULE_CATCH_UP_SECONDS',
  maxPackedTasks: 'COREMACHINE_MAX_PACKED_TASKS',
  janitorStallAfterSeconds: 'JANITOR_STALL_AFTER_SECONDS',
  janitorOutboxAgeSeconds: 'JANITOR_OUTBOX_AGE_SECONDS',
  janitorBatchSize: 'JANITOR_BATCH_SIZE',
  janitorMaxLeaseLosses: 'JANITOR_MAX_LEASE_LOSSES',
  shutdownGraceSeconds: 'COREMACHINE_SHUTDOWN_GRACE_SECONDS',
  workerToken: 'COREMACHINE_WORKER_TOKEN',
  dataDir: 'COREMACHINE_DATA_DIR',
  embeddedPgPort: 'COREMACHINE_EMBEDDED_PG_PORT',
  taskBatchSize: 'TASK_BATCH_SIZE',
  taskConcurrency: 'TASK_CONCURRENCY',
  jobConcurrency: 'JOB_CONCURRENCY',
  janitorIntervalSeconds: 'COREMACHINE_JANITOR_INTERVAL_SECONDS',
} as const satisfies Record<keyof (FunctionsSettings & LocalSettings), string>;

export type SettingName = keyof typeof SETTING_VARIABLES;
export type SettingOptions = FunctionsSettings & LocalSettings;

/**
 * The options given (undefined ones are not given), as the values of their variables: a boolean
 * becomes on/off, a number its decimal text; anything else is passed as it is for the schema to judge.
 * Returns them with, for each variable, the option that filled it (for the refusal's wording).
 */
export function optionsAsVariables(options: Readonly<Record<string, unknown>>): { values: Record<string, unknown>; filledBy: Map<string, string> } {
  const values: Record<string, unknown> = {};
  const filledBy = new Map<string, string>();
  for (const [option, value] of Object.entries(options)) {
    if (value === undefined || !(option in SETTING_VARIABLES)) continue;
    const variable = SETTING_VARIABLES[option as SettingName];
    values[variable] = typeof value === 'boolean' ? (value ? 'on' : 'off') : typeof value === 'number' ? String(value) : value;
    filledBy.set(variable, option);
  }
  return { values, filledBy };
}

/** The option names in `options` that are none of SETTING_VARIABLES nor `known` (a typo in plain JavaScript). */
export function unknownOptions(options: Readonly<Record<string, unknown>>, known: readonly string[] = []): string[] {
  return Object.keys(options).filter((name) => !(name in SETTING_VARIABLES) && !known.includes(name));
}
