import type { RetentionOptions } from './engine/retention';
import type { ScheduleSweepReport } from './schedules/schedules';

/**
 * What a janitor sweep is told, and its defaults: kept apart from the sweep itself so the
 * settings (core/config.ts) read the defaults without loading the engine.
 */
export interface JanitorOptions {
  /** A job with no event for this long is examined and explained. */
  stallAfterMs: number;
  /** Outbox rows older than this were not dispatched by their writer. */
  outboxAgeMs: number;
  batchSize: number;
  /** Messages still queued, if the transport can tell: no re-send while the backlog drains. */
  backlog?: () => number | undefined;
  /** Fires due schedule ticks; runs on the janitor's cadence (one call, its own failures collected). */
  schedules?: () => Promise<ScheduleSweepReport>;
  /** Leases a task may lose to hosts that died or stopped renewing; the last of them fails it. */
  maxLeaseLosses: number;
  /** Finished jobs older than this many days are deleted with all their rows; 0 or unset keeps everything. */
  retentionDays?: number;
  /** Batch bounds of the retention step (DEFAULT_RETENTION). */
  retention?: Partial<Omit<RetentionOptions, 'retentionDays'>>;
  /** A worker not heard from for this long leaves the workers view (its row is deleted). */
  workerRetentionMs: number;
}

/**
 * The janitor's windows, batch and bound when nothing overrides them: the one home of these
 * defaults (core/config.ts fills JANITOR_* from them; CoreMachine.sweep starts from them).
 */
export const DEFAULT_JANITOR_OPTIONS = {
  stallAfterMs: 5 * 60_000,
  // Dispatch follows commit within milliseconds: a row this old was left by a writer that died.
  outboxAgeMs: 5_000,
  batchSize: 500,
  maxLeaseLosses: 3,
  // Long enough to see what was lost and when, after which a stopped worker is only clutter.
  workerRetentionMs: 60 * 60_000,
} as const satisfies Partial<JanitorOptions>;
