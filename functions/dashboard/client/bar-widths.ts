/** What a bar draws: a stage's counters (StageProgress, or the list's current-stage counts). DOM-free, so unit tests run this file directly. */
export interface Counts {
  total: number;
  completed: number;
  failed: number;
}

/**
 * The widths (percent of the bar) of its completed and failed parts.
 *
 * A bar with no tasks to count (total 0: a stage not started, or one that created none) draws
 * empty: there is no fraction of nothing, and a made-up share is what once drew a pending stage
 * half green, half red. Counts past the total (a stage still creating its tasks in chunks counts
 * only those created) are clamped, so the parts never overflow the bar.
 */
export function barWidths({ total, completed, failed }: Counts): { completed: number; failed: number } {
  if (!(total > 0)) return { completed: 0, failed: 0 };
  const done = Math.min(100, (100 * Math.max(0, completed)) / total);
  return { completed: done, failed: Math.min(100 - done, (100 * Math.max(0, failed)) / total) };
}

/** A stage's counters in words: a stage that waits for a signal has no tasks, so it says what it waits for. */
export function countsText(counts: Counts & { signal?: string | undefined }): string {
  if (counts.signal) return counts.completed > 0 ? `signal "${counts.signal}" received` : `waiting for signal "${counts.signal}"`;
  return `${counts.completed}/${counts.total} completed · ${counts.failed} failed`;
}
