import { Cron } from 'croner';
import { z } from 'zod';

/**
 * Recurring jobs, declared in code next to the job types. Cron parsing, timezones and DST are
 * croner's (a dependency-free, well-kept parser): the one import here besides zod, because a
 * definition must fail where it is written, not on the first sweep in production.
 */

const SCHEDULE_NAME = /^[a-z][a-z0-9_.-]{0,99}$/;

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export const ScheduleOptions = z.strictObject({
  /** Also the idempotency key's middle part: `schedule:<name>:<tick>` stays within 200 characters. */
  name: z.string().regex(SCHEDULE_NAME, `schedule name must match ${String(SCHEDULE_NAME)}`),
  /** Five fields (minute precision) or six (with seconds), croner syntax. */
  cron: z.string().min(1).max(200),
  /** IANA zone the cron fields are read in, e.g. "Europe/Berlin" or "UTC". */
  timezone: z.string().refine(isTimeZone, { message: 'timezone must be an IANA time zone such as "Europe/Berlin" or "UTC"' }),
  jobType: z.string().min(1),
  parameters: z.unknown(),
  /**
   * How late a tick may still be fired (app stopped, schedule paused). Default: one tick interval,
   * so after any downtime the most recent missed tick fires once and older ones are skipped.
   * Must exceed the sweep interval (one minute in Azure), or on-time ticks count as missed.
   */
  catchUpSeconds: z.number().int().min(1).max(366 * 24 * 3600).optional(),
  /** The state when the schedule is first seen; afterwards only pause/resume change it. */
  paused: z.boolean().default(false),
});
export type ScheduleOptions = z.input<typeof ScheduleOptions>;

export interface ScheduleDefinition {
  readonly kind: 'schedule';
  readonly name: string;
  readonly cron: string;
  readonly timezone: string;
  readonly jobType: string;
  readonly parameters: unknown;
  readonly catchUpSeconds: number | undefined;
  readonly paused: boolean;
  /** The first tick strictly after `after`, or null when the pattern has no more. */
  nextTick(after: Date): Date | null;
  /** The latest tick at or before `atOrBefore`, or null. */
  latestTick(atOrBefore: Date): Date | null;
}

export function defineSchedule(options: ScheduleOptions): ScheduleDefinition {
  const parsed = ScheduleOptions.safeParse(options);
  if (!parsed.success) {
    throw new TypeError(`schedule "${String(options.name)}": ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const { name, cron, timezone, jobType, parameters, catchUpSeconds, paused } = parsed.data;
  let pattern: Cron;
  try {
    // No callback: croner only evaluates the pattern, it never starts a timer.
    pattern = new Cron(cron, { timezone });
  } catch (error) {
    throw new TypeError(`schedule "${name}": cron "${cron}" is not valid: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (pattern.nextRun(new Date(0)) === null) throw new TypeError(`schedule "${name}": cron "${cron}" never fires`);
  return {
    kind: 'schedule',
    name,
    cron,
    timezone,
    jobType,
    parameters,
    catchUpSeconds,
    paused,
    nextTick: (after) => pattern.nextRun(after),
    // croner's previousRuns excludes the reference itself; a millisecond later includes a tick exactly at it.
    latestTick: (atOrBefore) => pattern.previousRuns(1, new Date(atOrBefore.getTime() + 1))[0] ?? null,
  };
}

/** One schedule as `GET /api/schedules` shows it: the declaration and its state. */
export const ScheduleView = z.object({
  name: z.string(),
  cron: z.string(),
  timezone: z.string(),
  jobType: z.string(),
  parameters: z.unknown(),
  /** null: the default window of one tick interval. */
  catchUpSeconds: z.number().nullable(),
  paused: z.boolean(),
  nextFireAt: z.date().nullable(),
  lastFireAt: z.date().nullable(),
  lastJobId: z.string().nullable(),
  lastJobStatus: z.string().nullable(),
});
export type ScheduleView = z.infer<typeof ScheduleView>;
