import { Cron } from 'croner';
import type { ScheduleDefinition } from '../../models';

/**
 * A declared schedule with its cron compiled: what the registry hands the scheduler. Parsing,
 * time zones and DST are croner's (a dependency-free, well-kept parser); it lives here, not in
 * models/, so models/ keeps to zod alone.
 */
export interface RegisteredSchedule extends ScheduleDefinition {
  /** The first tick strictly after `after`, or null when the pattern has no more. */
  nextTick(after: Date): Date | null;
  /** The latest tick at or before `atOrBefore`, or null. */
  latestTick(atOrBefore: Date): Date | null;
}

/** Compiles a schedule's cron in its time zone; a pattern croner refuses, or one that never fires, is a TypeError naming the schedule. */
export function compileSchedule(definition: ScheduleDefinition): RegisteredSchedule {
  const { name, cron, timezone } = definition;
  let pattern: Cron;
  try {
    // No callback: croner only evaluates the pattern, it never starts a timer.
    pattern = new Cron(cron, { timezone });
  } catch (error) {
    throw new TypeError(`schedule "${name}": cron "${cron}" is not valid: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (pattern.nextRun(new Date(0)) === null) throw new TypeError(`schedule "${name}": cron "${cron}" never fires`);
  return {
    ...definition,
    nextTick: (after) => pattern.nextRun(after),
    // croner's previousRuns excludes the reference itself; a millisecond later includes a tick exactly at it.
    latestTick: (atOrBefore) => pattern.previousRuns(1, new Date(atOrBefore.getTime() + 1))[0] ?? null,
  };
}
