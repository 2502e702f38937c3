/**
 * Group commit: items added while a flush is running are committed together in the next one
 * (task results in core/engine/task-runner.ts, claims in core/engine/shared-claims.ts, claims under
 * concurrency limits in core/engine/limits.ts).
 * Each result is committed as soon as it is ready (a fast failure never waits for a slow
 * sibling), yet under load many results share one transaction and one counter update.
 */
export class GroupCommitter<T, R> {
  private pending: Array<{ item: T; resolve: (value: R) => void; reject: (error: unknown) => void }> = [];
  private flushing = false;

  constructor(private readonly commit: (items: T[]) => Promise<Map<T, R>>) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    // Let results finishing in the same tick join the first group.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const group = this.pending;
      this.pending = [];
      try {
        const results = await this.commit(group.map((entry) => entry.item));
        for (const entry of group) {
          const result = results.get(entry.item);
          if (result === undefined) entry.reject(new Error('group commit returned no result for an item'));
          else entry.resolve(result);
        }
      } catch (error) {
        // Every waiter of the failed group gets the error; its batch is then abandoned.
        for (const entry of group) entry.reject(error);
      }
    }
    this.flushing = false;
  }
}
