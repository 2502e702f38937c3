import pg from 'pg';

/**
 * Samples pg_stat_activity of one database every `everyMs` on its own connection (straight to the
 * server, never through PgBouncer): how many server connections the run holds at peak, and what
 * share of the busy backends were waiting on a lock (`wait_event_type = 'Lock'`). Many instances
 * fighting over one stage counter row show up as a high lock-wait share.
 */
export interface ActivitySummary {
  peakServerConnections: number;
  /** Σ lock-waiting backends / Σ active backends over all samples (0 when nothing was active). */
  lockWaitShare: number;
  /** What the lock-waiting backends were running and waiting for, by share of all lock-wait samples. */
  lockWaits: Array<{ what: string; share: number }>;
  samples: number;
}

export class ActivitySampler {
  private peak = 0;
  private active = 0;
  private lockWaiting = 0;
  private samples = 0;
  private readonly waits = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;
  private summary: Promise<ActivitySummary> | undefined;

  private constructor(
    private readonly client: pg.Client,
    private readonly database: string,
    private readonly everyMs: number,
  ) {}

  static async start(url: string, database: string, everyMs = 100): Promise<ActivitySampler> {
    const client = new pg.Client({ connectionString: url, application_name: 'cm-bench-sampler' });
    client.on('error', () => undefined);
    await client.connect();
    const sampler = new ActivitySampler(client, database, everyMs);
    sampler.schedule();
    return sampler;
  }

  private schedule(): void {
    // The next sample is taken an interval after the previous one returned: a slow server is not piled on.
    this.timer = setTimeout(() => {
      this.inFlight = this.sample().finally(() => {
        this.inFlight = undefined;
        if (!this.stopped) this.schedule();
      });
    }, this.everyMs);
  }

  private async sample(): Promise<void> {
    try {
      // A backend waits for at most one lock at a time, so the join yields one row per backend.
      const result = await this.client.query<{ state: string | null; waiting: boolean; locktype: string | null; relation: string | null; query: string }>(
        `SELECT a.state, a.state = 'active' AND a.wait_event_type = 'Lock' AS waiting,
                l.locktype, l.relation::regclass::text AS relation,
                left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70) AS query
           FROM pg_stat_activity a
           LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
          WHERE a.datname = $1 AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
            AND a.application_name NOT IN ('cm-bench-poller', 'cm-bench-admin')`,
        [this.database],
      );
      this.samples++;
      this.peak = Math.max(this.peak, result.rows.length);
      for (const row of result.rows) {
        if (row.state !== 'active') continue;
        this.active++;
        if (!row.waiting) continue;
        this.lockWaiting++;
        const what = `${row.locktype ?? 'lock'}${row.relation ? ` on ${row.relation}` : ''}: ${row.query}`;
        this.waits.set(what, (this.waits.get(what) ?? 0) + 1);
      }
    } catch {
      // A missed sample only lowers the resolution.
    }
  }

  /** Idempotent: a second call returns the first call's summary. */
  stop(): Promise<ActivitySummary> {
    this.summary ??= this.finish();
    return this.summary;
  }

  private async finish(): Promise<ActivitySummary> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inFlight;
    await this.sample();
    await this.client.end().catch(() => undefined);
    const lockWaits = [...this.waits.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([what, count]) => ({ what, share: count / this.lockWaiting }));
    return { peakServerConnections: this.peak, lockWaitShare: this.active === 0 ? 0 : this.lockWaiting / this.active, lockWaits, samples: this.samples };
  }
}
