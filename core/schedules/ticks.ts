import type { RegisteredSchedule } from './cron-pattern';

/** Counting skipped ticks stops here: an every-second cron after a month away is "86,400+ ticks", not a loop. */
const MAX_COUNTED = 1000;

export interface SkippedTicks {
  first: Date;
  last: Date;
  /** Exact below MAX_COUNTED; `countCapped` says the real number is larger. */
  count: number;
  countCapped: boolean;
}

export interface TickPlan {
  /** The one tick to fire now, if any. */
  fire: Date | undefined;
  /** Due ticks not fired: older than the latest, or (all of them) outside the catch-up window. */
  skipped: SkippedTicks | undefined;
  /** The new cursor: the first tick after everything handled now. */
  next: Date | null;
}

/**
 * What a sweep at `now` does for a schedule whose first unhandled tick is `cursor` (≤ now). Only
 * the latest due tick can fire, and only if it is at most the catch-up window old, so a schedule
 * that was down for N ticks fires once, never N times. The default window is the tick's own
 * interval (to the tick after it), which the latest due tick always meets: after downtime the
 * most recent tick runs, late, and the older ones are recorded as skipped.
 */
export function planTicks(schedule: RegisteredSchedule, cursor: Date, now: Date, catchUpSeconds: number | undefined): TickPlan {
  const latest = schedule.latestTick(now);
  if (!latest || latest < cursor) return { fire: undefined, skipped: undefined, next: schedule.nextTick(now) };
  const after = schedule.nextTick(latest);
  const windowMs = catchUpSeconds !== undefined ? catchUpSeconds * 1000 : after ? after.getTime() - latest.getTime() : Number.POSITIVE_INFINITY;
  const fire = now.getTime() - latest.getTime() <= windowMs ? latest : undefined;
  return { fire, skipped: skippedTicks(schedule, cursor, latest, fire === undefined), next: after };
}

/** The ticks from the cursor up to the latest (inclusive when the latest is skipped too). */
function skippedTicks(schedule: RegisteredSchedule, cursor: Date, latest: Date, includeLatest: boolean): SkippedTicks | undefined {
  let first: Date | undefined;
  let count = 0;
  // The cursor is itself a tick unless the cron changed; start just before it so it is counted.
  for (
    let tick = schedule.nextTick(new Date(cursor.getTime() - 1));
    tick && (tick < latest || (includeLatest && tick.getTime() === latest.getTime()));
    tick = schedule.nextTick(tick)
  ) {
    first ??= tick;
    if (++count >= MAX_COUNTED) break;
  }
  if (!first) return undefined;
  const last = includeLatest ? latest : (schedule.latestTick(new Date(latest.getTime() - 1)) ?? first);
  return { first, last, count, countCapped: count >= MAX_COUNTED };
}
