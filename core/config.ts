import path from 'node:path';
import { z } from 'zod';
import { optionsAsVariables, unknownOptions, type SettingOptions } from './config-options';
import { DEFAULT_JANITOR_OPTIONS } from './janitor-options';
import { PAYLOAD_SETTINGS, payloadSettingsFrom, type PayloadSettings } from './payloads/payload-settings';
import { DEFAULT_MAX_PACKED_TASKS, MAX_PACKED_TASKS } from '../models/messages';

/**
 * `off` behind a pooler in transaction mode that cannot track named prepared statements
 * (Debian's PgBouncer 1.18, or Azure's without pgbouncer.max_prepared_statements).
 */
const PreparedStatementsSetting = z
  .enum(['on', 'off', 'true', 'false', '1', '0'])
  .default('on')
  .transform((value) => value === 'on' || value === 'true' || value === '1');

/** COREMACHINE_PREPARED_STATEMENTS alone, for code that builds a pool without the whole config. */
export function preparedStatementsFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const parsed = PreparedStatementsSetting.safeParse(env.COREMACHINE_PREPARED_STATEMENTS?.trim().toLowerCase());
  if (!parsed.success)
    throw new Error(`invalid configuration: COREMACHINE_PREPARED_STATEMENTS must be on or off, not "${env.COREMACHINE_PREPARED_STATEMENTS}"`);
  return parsed.data;
}

/**
 * Every setting of the engine, the Functions app and `coremachine dev`, read from the environment
 * in one place with its default; docs/configuration.md "Settings" lists them all. Code in
 * functions/ and bin/ reads the parsed CoreMachineConfig, never process.env.
 */
const EnvSchema = z.object({
  DATABASE_URL: z.string().min(1).optional(),
  // 'entra': the password is a Microsoft Entra access token of the app's identity (Azure); 'password': it is in DATABASE_URL.
  DATABASE_AUTH: z.enum(['password', 'entra']).default('password'),
  // Terminal jobs finished longer ago than this are deleted by the janitor; 0 keeps everything.
  COREMACHINE_RETENTION_DAYS: z.coerce.number().int().min(0).max(36_500).default(30),
  COREMACHINE_DATA_DIR: z.string().min(1).default('.coremachine'),
  COREMACHINE_EMBEDDED_PG_PORT: z.coerce.number().int().min(1).max(65535).default(54329),
  PG_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  TASK_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(32),
  TASK_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(8),
  JOB_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(2),
  /** Default catch-up window of schedules that set none; unset = one tick interval. */
  SCHEDULE_CATCH_UP_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(366 * 24 * 3600)
    .optional(),
  PG_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  /** The most tasks one queue message carries (core/transport/task-packing.ts); 1 turns packing off. */
  COREMACHINE_MAX_PACKED_TASKS: z.coerce.number().int().min(1).max(MAX_PACKED_TASKS).default(DEFAULT_MAX_PACKED_TASKS),
  COREMACHINE_PREPARED_STATEMENTS: PreparedStatementsSetting,
  // Remote workers must also present this as a bearer token (functions/http-workers.ts); unset or empty = the function key suffices.
  COREMACHINE_WORKER_TOKEN: z.string().optional(),
  // The janitor's windows: a job with no event this long is examined; outbox rows older than this were not sent by their writer.
  JANITOR_STALL_AFTER_SECONDS: z.coerce
    .number()
    .int()
    .min(10)
    .max(7 * 24 * 3600)
    .default(DEFAULT_JANITOR_OPTIONS.stallAfterMs / 1000),
  JANITOR_OUTBOX_AGE_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 3600)
    .default(DEFAULT_JANITOR_OPTIONS.outboxAgeMs / 1000),
  JANITOR_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(DEFAULT_JANITOR_OPTIONS.batchSize),
  // Leases a task may lose to a host that died or stopped renewing before it fails with LeaseExpired (each loss re-queues it, not an attempt).
  JANITOR_MAX_LEASE_LOSSES: z.coerce.number().int().min(1).max(100).default(DEFAULT_JANITOR_OPTIONS.maxLeaseLosses),
  // On SIGTERM (Flex scale-in, Ctrl-C): how long running handlers may finish before their tasks are given back to other instances.
  COREMACHINE_SHUTDOWN_GRACE_SECONDS: z.coerce.number().int().min(0).max(3600).default(20),
  // `coremachine dev` requires this key like the host does (empty = unset); the CLI sends it (remoteSettings).
  COREMACHINE_FUNCTION_KEY: z.string().optional(),
  // `coremachine dev`/`demo`: how often the in-process janitor sweeps (the Functions app uses JANITOR_SCHEDULE).
  COREMACHINE_JANITOR_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(3600).default(10),
  // The payload store for values too large for a row (core/payloads/payload-settings.ts, docs/payloads.md).
  ...PAYLOAD_SETTINGS,
});

/** The names of every environment setting loadConfig reads (docs/configuration.md "Settings" lists each). */
export const CONFIG_SETTING_NAMES: readonly string[] = Object.keys(EnvSchema.shape);

/** The janitor's windows and batch (core/janitor.ts JanitorOptions), as both hosts pass them to a sweep. */
export interface JanitorSettings {
  stallAfterMs: number;
  outboxAgeMs: number;
  batchSize: number;
  maxLeaseLosses: number;
}

export interface CoreMachineConfig {
  databaseUrl: string | undefined;
  databaseAuth: 'password' | 'entra';
  retentionDays: number;
  dataDir: string;
  embeddedPgPort: number;
  poolMax: number;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  taskBatchSize: number;
  taskConcurrency: number;
  jobConcurrency: number;
  scheduleCatchUpSeconds: number | undefined;
  /** The most tasks one queue message carries (COREMACHINE_MAX_PACKED_TASKS). */
  maxPackedTasks: number;
  /** Wait for a pooled connection before failing transiently (PG_CONNECT_TIMEOUT_MS). */
  connectTimeoutMs: number;
  /** Named prepared statements (COREMACHINE_PREPARED_STATEMENTS); off behind PgBouncer 1.18. */
  preparedStatements: boolean;
  /** Bearer token remote workers must send besides the function key (COREMACHINE_WORKER_TOKEN). */
  workerToken: string | undefined;
  janitor: JanitorSettings;
  /** The key `coremachine dev` requires on every route but health (COREMACHINE_FUNCTION_KEY). */
  functionKey: string | undefined;
  /** In-process janitor cadence of the local runtime (COREMACHINE_JANITOR_INTERVAL_SECONDS). */
  janitorIntervalMs: number;
  /** Shutdown grace for running handlers (COREMACHINE_SHUTDOWN_GRACE_SECONDS). */
  shutdownGraceMs: number;
  /** Where values too large for a row go, and the limits (COREMACHINE_PAYLOAD_*). */
  payloads: PayloadSettings;
}

/**
 * The settings from the environment, with `options` given in code (core/config-options.ts) over
 * their variables. Both go through the one schema: a bad value is refused naming the variable, or
 * the option when it came from code (`option poolMax (PG_POOL_MAX): …`).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, options: Readonly<SettingOptions> = {}): CoreMachineConfig {
  const unknown = unknownOptions(options);
  if (unknown.length > 0) throw new Error(`invalid configuration: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  const { values, filledBy } = optionsAsVariables(options);
  const parsed = EnvSchema.safeParse({ ...env, ...values });
  if (!parsed.success) {
    const name = (variable: string) => (filledBy.has(variable) ? `option ${filledBy.get(variable)} (${variable})` : variable);
    const detail = parsed.error.issues.map((issue) => `${name(issue.path.join('.'))}: ${issue.message}`).join('; ');
    throw new Error(`invalid configuration: ${detail}`);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    databaseAuth: e.DATABASE_AUTH,
    retentionDays: e.COREMACHINE_RETENTION_DAYS,
    dataDir: path.resolve(e.COREMACHINE_DATA_DIR),
    embeddedPgPort: e.COREMACHINE_EMBEDDED_PG_PORT,
    poolMax: e.PG_POOL_MAX,
    logLevel: e.LOG_LEVEL,
    taskBatchSize: e.TASK_BATCH_SIZE,
    taskConcurrency: e.TASK_CONCURRENCY,
    jobConcurrency: e.JOB_CONCURRENCY,
    scheduleCatchUpSeconds: e.SCHEDULE_CATCH_UP_SECONDS,
    maxPackedTasks: e.COREMACHINE_MAX_PACKED_TASKS,
    connectTimeoutMs: e.PG_CONNECT_TIMEOUT_MS,
    preparedStatements: e.COREMACHINE_PREPARED_STATEMENTS,
    workerToken: e.COREMACHINE_WORKER_TOKEN || undefined,
    janitor: {
      stallAfterMs: e.JANITOR_STALL_AFTER_SECONDS * 1000,
      outboxAgeMs: e.JANITOR_OUTBOX_AGE_SECONDS * 1000,
      batchSize: e.JANITOR_BATCH_SIZE,
      maxLeaseLosses: e.JANITOR_MAX_LEASE_LOSSES,
    },
    functionKey: e.COREMACHINE_FUNCTION_KEY || undefined,
    janitorIntervalMs: e.COREMACHINE_JANITOR_INTERVAL_SECONDS * 1000,
    shutdownGraceMs: e.COREMACHINE_SHUTDOWN_GRACE_SECONDS * 1000,
    payloads: payloadSettingsFrom(e),
  };
}

/** Where the CLI's remote commands send requests unless --url or COREMACHINE_URL says otherwise. */
export const DEFAULT_API_URL = 'http://localhost:7071';

/**
 * The CLI's remote settings (COREMACHINE_URL, COREMACHINE_FUNCTION_KEY). Read apart from
 * loadConfig on purpose: a command that only talks HTTP must not fail on a database setting.
 */
export function remoteSettings(env: NodeJS.ProcessEnv): { apiUrl: string; functionKey: string | undefined } {
  // An empty COREMACHINE_URL is kept, so it is reported as "not a URL" rather than silently replaced.
  return { apiUrl: env.COREMACHINE_URL ?? DEFAULT_API_URL, functionKey: env.COREMACHINE_FUNCTION_KEY };
}
