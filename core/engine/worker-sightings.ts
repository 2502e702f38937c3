import type pg from 'pg';
import { recordRemoteClaim, recordRemoteHeartbeat } from '../state/workers-store';

/**
 * A worker's row is written at most this often by one instance, whatever it claims and reports:
 * a worker polling in a loop, or reporting a thousand small tasks a second, costs one write per
 * interval, not one per request (and the statement's own age check holds across instances).
 */
export const WORKER_WRITE_INTERVAL_SECONDS = 5;

/** Worker ids are chosen by the workers: the memory of them is bounded, the oldest forgotten first. */
const MAX_REMEMBERED_WORKERS = 10_000;

interface Written {
  claimAt: number;
  heardAt: number;
  /** The task types of its last recorded claim, sorted and joined. */
  taskTypes: string;
}

/** What the engine writes of remote workers as they claim and report (the workers view, migration 022). */
export class RemoteWorkerSightings {
  private readonly written = new Map<string, Written>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly intervalMs = WORKER_WRITE_INTERVAL_SECONDS * 1000,
  ) {}

  /** A claim request: recorded unless this instance recorded one of the same task types within the interval. */
  async claimed(workerId: string, taskTypes: readonly string[]): Promise<void> {
    const types = [...new Set(taskTypes)].sort();
    const key = types.join('\n');
    const now = Date.now();
    const last = this.written.get(workerId);
    if (last && last.taskTypes === key && now - last.claimAt < this.intervalMs) return;
    // Remembered before the write, so requests arriving meanwhile do not write it again.
    await this.writing(workerId, { claimAt: now, heardAt: now, taskTypes: key }, last, () =>
      recordRemoteClaim(this.pool, { workerId, taskTypes: types }, this.intervalMs / 1000),
    );
  }

  /** A heartbeat, completion or failure report: the worker's last heartbeat, at most once per interval. */
  async heard(workerId: string): Promise<void> {
    const now = Date.now();
    const last = this.written.get(workerId);
    if (last && now - last.heardAt < this.intervalMs) return;
    await this.writing(workerId, { claimAt: last?.claimAt ?? -Infinity, heardAt: now, taskTypes: last?.taskTypes ?? '' }, last, () =>
      recordRemoteHeartbeat(this.pool, workerId, this.intervalMs / 1000),
    );
  }

  private async writing(workerId: string, next: Written, previous: Written | undefined, write: () => Promise<void>): Promise<void> {
    this.written.delete(workerId);
    if (this.written.size >= MAX_REMEMBERED_WORKERS) this.written.delete(this.written.keys().next().value as string);
    this.written.set(workerId, next);
    try {
      await write();
    } catch (error) {
      // Not written: the next request tries again. The error is the request's (a 503 when transient).
      if (this.written.get(workerId) === next) {
        if (previous) this.written.set(workerId, previous);
        else this.written.delete(workerId);
      }
      throw error;
    }
  }
}
