import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import { RESULT_COMMIT_RETRY, retryTransient } from '../db/retry-transient';
import { errorToShape } from '../errors';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import { recordHostHeartbeat, removeWorker } from '../state/workers-store';

/** How often a host that runs queue tasks says it is alive: one write per host per interval, none per task. */
export const HOST_HEARTBEAT_SECONDS = 10;

/**
 * The machine this process runs on: the Functions instance in Azure (WEBSITE_INSTANCE_ID, set by
 * the platform, is what its logs and metrics name), else the host name.
 */
export function hostName(env: NodeJS.ProcessEnv = process.env): string {
  return env.WEBSITE_INSTANCE_ID || os.hostname();
}

/**
 * This process as a worker in the workers view (migration 022): an in-process host running the
 * app's queue task types. Its id is unique per engine (two engines in one process, or a restart
 * with the same pid in a container, are two workers). It beats on its own unref'd timer while it
 * takes tasks; a claim only notes the time in memory, which goes out with the next beat, so no
 * task costs a write. The tasks it holds are those whose worker_id is its id (set by the claim).
 */
export class HostPresence {
  readonly host: string;
  readonly workerId: string;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private lastClaimAt: Date | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly registry: Registry,
    private readonly logger: Logger,
    host: string = hostName(),
  ) {
    this.host = host;
    this.workerId = `${host}:${process.pid}:${randomBytes(3).toString('hex')}`;
  }

  /** Joins the view now and beats from then on; calling it again changes nothing. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.beat(), HOST_HEARTBEAT_SECONDS * 1000);
    this.timer.unref();
    void this.beat();
  }

  /** A batch claimed tasks: kept in memory for the next beat. */
  claimed(): void {
    this.lastClaimAt = new Date();
  }

  /**
   * A clean stop: no more beats, and the row goes at once rather than going stale. A shutdown
   * often meets a squeezed or restarting database (every instance stopping at once, connections
   * being recycled): transient faults are ridden out for up to ~15 s, as a result commit's are,
   * before the stop reports the failure.
   */
  async leave(): Promise<void> {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.beating;
    await retryTransient(() => removeWorker(this.pool, 'in-process', this.workerId), RESULT_COMMIT_RETRY);
  }

  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = this.write().finally(() => {
      this.beating = undefined;
    });
    await this.beating;
  }

  private async write(): Promise<void> {
    try {
      await recordHostHeartbeat(this.pool, {
        workerId: this.workerId,
        taskTypes: this.registry.taskTypes('queue'),
        host: this.host,
        lastClaimAt: this.lastClaimAt,
      });
    } catch (error) {
      // Not swallowed: the next beat writes the row again, and until then the view shows this host
      // a little older. There is no caller to throw to: the beat runs on a timer.
      this.logger.warn('worker heartbeat failed; retrying on the next beat', { workerId: this.workerId, error: errorToShape(error) });
    }
  }
}
