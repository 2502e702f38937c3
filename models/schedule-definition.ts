import { z } from 'zod';

/**
 * Recurring jobs, declared in code next to the job types. A definition checks its name, time zone
 * and windows where it is written; its cron is compiled (croner) when it is registered, in
 * core/schedules/cron-pattern.ts, so models/ imports nothing but zod. Registration happens at
 * startup, so a bad cron still fails long before the first sweep in production.
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
  /** Five fields (minute precision) or six (with seconds), croner syntax; compiled at registration. */
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
  catchUpSeconds: z
    .number()
    .int()
    .min(1)
    .max(366 * 24 * 3600)
    .optional(),
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
}

export function defineSchedule(options: ScheduleOptions): ScheduleDefinition {
  const parsed = ScheduleOptions.safeParse(options);
  if (!parsed.success) {
    throw new TypeError(`schedule "${String(options.name)}": ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const { name, cron, timezone, jobType, parameters, catchUpSeconds, paused } = parsed.data;
  return { kind: 'schedule', name, cron, timezone, jobType, parameters, catchUpSeconds, paused };
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
