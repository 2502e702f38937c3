/**
 * When this process last deferred a message of each slot key for want of a slot or a token. Read
 * with a window: the task runner wakes a key's waiting tasks when it frees a slot of a key that
 * deferred in the last minute, and a limited claim sends a key that deferred in the last 2 seconds
 * the locked way (core/engine/limits.ts). Bounded: past 10,000 keys, the entries older than
 * `keepMs` (the longest window read) are dropped.
 */
export class RecentDeferrals {
  private readonly lastAt = new Map<string, number>();

  constructor(private readonly keepMs: number) {}

  note(limitKey: string, now: number = Date.now()): void {
    if (this.lastAt.size >= 10_000) {
      for (const [key, at] of this.lastAt) if (now - at >= this.keepMs) this.lastAt.delete(key);
    }
    this.lastAt.set(limitKey, now);
  }

  /** Whether the key deferred less than `windowMs` ago. */
  within(limitKey: string, windowMs: number, now: number = Date.now()): boolean {
    return now - (this.lastAt.get(limitKey) ?? -Infinity) < windowMs;
  }
}
