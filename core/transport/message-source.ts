/**
 * Messages a queue pulls on demand instead of holding them all: Service Bus keeps a stage's
 * messages server-side, so an in-memory stand-in must not keep 100,000 of them in the process.
 * A source is read a page at a time when the queue runs low; `done` ends it.
 */
export interface MessageSource<M> {
  /** The next page of at most `limit` messages; `done` when nothing follows it. */
  next(limit: number): Promise<{ messages: M[]; done: boolean }>;
}

export interface FeederOptions {
  /** Pull the next page when fewer than this many messages are visible. */
  lowWaterMark: number;
  pageSize: number;
  /** A source whose reads fail this many times in a row is dropped (as a crash would lose it). */
  maxConsecutiveFailures: number;
}

export const DEFAULT_FEEDER_OPTIONS: FeederOptions = { lowWaterMark: 1000, pageSize: 1000, maxConsecutiveFailures: 10 };

/**
 * Drains sources in the order they were attached, one page read in flight at a time, into
 * `deliver`. A failing read is retried with backoff (a transient database fault must not lose a
 * stage); after `maxConsecutiveFailures` the source is dropped and the error kept in
 * `failures`, so the janitor's stall detection re-dispatches the stage as after a crash.
 */
export class SourceFeeder<M> {
  private readonly sources: Array<MessageSource<M>> = [];
  private reading = false;
  private closed = false;
  private consecutiveFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  readonly failures: unknown[] = [];
  readonly stats = { pagesRead: 0, messagesRead: 0, readErrors: 0, sourcesDropped: 0 };

  constructor(
    private readonly options: FeederOptions,
    private readonly visible: () => number,
    private readonly deliver: (messages: M[]) => void,
  ) {}

  attach(source: MessageSource<M>): void {
    if (this.closed) throw new Error('queue is closed');
    this.sources.push(source);
    this.refill();
  }

  get pageSize(): number {
    return this.options.pageSize;
  }

  get lowWaterMark(): number {
    return this.options.lowWaterMark;
  }

  /** Sources not yet exhausted: their messages are still to come. */
  get pending(): number {
    return this.sources.length;
  }

  /** Starts a page read when the queue is below its low-water mark and none is in flight. */
  refill(): void {
    if (this.closed || this.reading || this.retryTimer || this.sources.length === 0) return;
    if (this.visible() >= this.options.lowWaterMark) return;
    const source = this.sources[0] as MessageSource<M>;
    this.reading = true;
    source.next(this.options.pageSize).then(
      ({ messages, done }) => {
        this.reading = false;
        if (this.closed) return;
        this.consecutiveFailures = 0;
        this.stats.pagesRead++;
        this.stats.messagesRead += messages.length;
        if (done) this.sources.shift();
        if (messages.length > 0) this.deliver(messages);
        this.refill();
      },
      (error: unknown) => {
        this.reading = false;
        if (this.closed) return;
        this.stats.readErrors++;
        this.consecutiveFailures++;
        if (this.consecutiveFailures >= this.options.maxConsecutiveFailures) {
          this.sources.shift();
          this.stats.sourcesDropped++;
          this.failures.push(error);
          this.consecutiveFailures = 0;
          this.refill();
          return;
        }
        const delay = Math.min(5000, 50 * 2 ** (this.consecutiveFailures - 1));
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.refill();
        }, delay);
        this.retryTimer.unref();
      },
    );
  }

  close(): void {
    this.closed = true;
    this.sources.length = 0;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }
}
