import pg from 'pg';

/**
 * Fault injection for scale runs (--kill-every-ms): every interval, terminates one randomly chosen
 * server backend of the bench database (never the bench's own poller, sampler or admin
 * connections), as a failover or an idle-connection reaper would. What the engine makes of it
 * shows in the transient-error, redelivery and failed-task columns.
 */
export class ConnectionKiller {
  killed = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;
  private stopping: Promise<number> | undefined;

  private constructor(
    private readonly client: pg.Client,
    private readonly database: string,
    private readonly everyMs: number,
  ) {}

  static async start(url: string, database: string, everyMs: number): Promise<ConnectionKiller> {
    const client = new pg.Client({ connectionString: url, application_name: 'cm-bench-admin' });
    client.on('error', () => undefined);
    await client.connect();
    return new ConnectionKiller(client, database, everyMs);
  }

  /** Starts killing. Called once the job is submitted: submission is the caller's (HTTP) concern, not the workers'. */
  arm(): void {
    if (!this.stopped && !this.timer) this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.inFlight = this.killOne().finally(() => {
        this.inFlight = undefined;
        if (!this.stopped) this.schedule();
      });
    }, this.everyMs);
  }

  private async killOne(): Promise<void> {
    try {
      const result = await this.client.query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
          WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
            AND application_name NOT IN ('cm-bench-poller', 'cm-bench-sampler', 'cm-bench-admin')
          ORDER BY random() LIMIT 1`,
        [this.database],
      );
      if (result.rows[0]?.killed) this.killed++;
    } catch {
      // Nothing to kill right now, or the server is busy: try again next interval.
    }
  }

  /** Idempotent: a second call returns the first call's count. */
  stop(): Promise<number> {
    this.stopping ??= this.finish();
    return this.stopping;
  }

  private async finish(): Promise<number> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inFlight;
    await this.client.end().catch(() => undefined);
    return this.killed;
  }
}
