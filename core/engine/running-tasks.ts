import type pg from 'pg';
import type { Logger } from '../logger';
import { errorToShape } from '../errors';
import { extendLeases } from '../state/tasks-store';

/** A handler running in this process: what aborting it, giving its claim back and keeping its lease need. */
export interface RunningTask {
  abort: TaskAbort;
  claimId: string;
  leaseSeconds: number;
  /** Epoch ms after which the lease is extended again: a third of the lease after the last extension. */
  renewAt: number;
}

/** Held leases are looked at four times per (shortest) lease, at most once a second, at least every 100 ms. */
const tickMsFor = (leaseSeconds: number): number => Math.min(1000, Math.max(100, (leaseSeconds * 1000) / 4));

/**
 * Extends the leases of the handlers running in this process while they run, so a lease can be
 * short (DEFAULT_LEASE_SECONDS) and a task held by a host that died is claimed again soon after,
 * whatever its handler's running time. It reads the task batch's own map of running handlers: a
 * task costs nothing here unless it runs past a third of its lease, and those that do are extended
 * together, one statement per tick. A claim found lost (re-claimed after this host stalled past
 * its lease, or the task stopped) aborts its handler's signal.
 */
export class LeaseKeeper {
  private timer: NodeJS.Timeout | undefined;
  private tickMs = Number.POSITIVE_INFINITY;
  private extending = false;

  constructor(
    private readonly running: ReadonlyMap<string, RunningTask>,
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
  ) {}

  /** Makes sure a lease of this length is looked at often enough (the timer lives as long as the process, unref'd). */
  watch(leaseSeconds: number): void {
    const tickMs = tickMsFor(leaseSeconds);
    if (tickMs >= this.tickMs) return;
    if (this.timer) clearInterval(this.timer);
    this.tickMs = tickMs;
    this.timer = setInterval(() => void this.extendDue(), tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.tickMs = Number.POSITIVE_INFINITY;
  }

  private async extendDue(): Promise<void> {
    if (this.extending || this.running.size === 0) return;
    const now = Date.now();
    const due: Array<[string, RunningTask]> = [];
    for (const entry of this.running) if (entry[1].renewAt <= now) due.push(entry);
    if (due.length === 0) return;
    this.extending = true;
    try {
      const kept = await extendLeases(
        this.pool,
        due.map(([taskId, held]) => ({ taskId, claimId: held.claimId, leaseSeconds: held.leaseSeconds })),
      );
      for (const [taskId, held] of due) {
        if (kept.has(taskId)) held.renewAt = Date.now() + (held.leaseSeconds * 1000) / 3;
        else if (this.running.get(taskId) === held) held.abort.abort(new Error(`lease on task ${taskId} was lost: it was claimed again or stopped`));
      }
    } catch (error) {
      // Not swallowed: the next tick tries again, and should the lease run out first the janitor
      // re-queues the task as a lost lease (not an attempt). There is no caller to throw to.
      this.logger.warn('lease extension failed; retrying on the next tick', { tasks: due.length, error: errorToShape(error) });
    } finally {
      this.extending = false;
    }
  }
}

/**
 * A task's abort signal, made only when its handler reads `ctx.signal`: most handlers never do,
 * and a controller per task would cost every task. An abort that comes before
 * the first read is kept, so the signal the handler then gets is already aborted, with its reason.
 */
export class TaskAbort {
  private controller: AbortController | undefined;
  private pendingReason: { reason: unknown } | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.pendingReason) this.controller.abort(this.pendingReason.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.controller) this.controller.abort(reason);
    else this.pendingReason ??= { reason };
  }
}
