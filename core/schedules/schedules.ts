import type pg from 'pg';
import type { JobView, ScheduleView } from '../../models';
import type { RegisteredSchedule } from './cron-pattern';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import type { UnitOfWork } from '../engine/unit-of-work';
import {
  advanceSchedule,
  ensureSchedules,
  listScheduleEvents,
  listScheduleRows,
  lockSchedule,
  moveCursor,
  recordScheduleEvent,
  setSchedulePaused,
  type ScheduleEvent,
  type ScheduleRow,
} from '../state/schedules-store';
import { planTicks, type SkippedTicks } from './ticks';
import { commit } from '../engine/commit';

export interface ScheduleSweepOptions {
  /** The clock; tests move a fake one through ticks, DST changes and downtime. */
  now: () => Date;
  /** Default catch-up window for schedules that do not set their own; undefined = one tick interval. */
  catchUpSeconds: number | undefined;
}

export interface ScheduleSweepReport {
  fired: Array<{ name: string; tick: Date; jobId: string; created: boolean }>;
  skipped: Array<{ name: string } & SkippedTicks>;
  /** Ticks another sweep handled first (its compare-and-set won); nothing to do here. */
  lostRaces: number;
}

type Submit = (jobType: string, parameters: unknown, idempotencyKey: string) => Promise<{ job: JobView; created: boolean }>;

/** The key that makes a tick one job however many instances fire it. */
export function tickKey(name: string, tick: Date): string {
  return `schedule:${name}:${tick.toISOString()}`;
}

/**
 * Fires declared schedules exactly once per tick across instances. A due tick is submitted with a
 * key derived from the tick, so concurrent sweeps make one job; then the schedule's cursor moves by
 * compare-and-set, so only one sweep records the tick. Submit-then-advance means a crash between
 * the two re-submits the same key next sweep (the same job), and a tick is never lost.
 */
export class Schedules {
  private readonly options: ScheduleSweepOptions;

  constructor(
    private readonly pool: pg.Pool,
    private readonly unitOfWork: UnitOfWork,
    private readonly registry: Registry,
    private readonly logger: Logger,
    private readonly submit: Submit,
    options: Partial<ScheduleSweepOptions> = {},
  ) {
    this.options = { now: options.now ?? (() => new Date()), catchUpSeconds: options.catchUpSeconds };
  }

  /** One pass over every declared schedule; failures of one schedule do not stop the others. */
  async sweep(): Promise<ScheduleSweepReport> {
    const report: ScheduleSweepReport = { fired: [], skipped: [], lostRaces: 0 };
    const declared = this.registry.schedules();
    if (declared.length === 0) return report;
    const now = this.options.now();
    const rows = await this.rows(declared, now);
    const failures: unknown[] = [];
    for (const schedule of declared) {
      const row = rows.get(schedule.name);
      if (!row || row.paused) continue;
      try {
        await this.sweepOne(schedule, row, now, report);
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, `schedule sweep: ${failures.length} schedule(s) failed; the next sweep retries them`);
    return report;
  }

  async list(): Promise<ScheduleView[]> {
    const declared = this.registry.schedules();
    const rows = await this.rows(declared, this.options.now());
    return declared.map((schedule) => view(schedule, rows.get(schedule.name)));
  }

  async get(name: string): Promise<ScheduleView> {
    const schedule = this.registry.schedule(name);
    const rows = await this.rows([schedule], this.options.now());
    return view(schedule, rows.get(name));
  }

  pause(name: string): Promise<ScheduleView> {
    return this.setPaused(name, true);
  }

  /** Ticks missed while paused are treated like downtime: the latest fires if within the catch-up window. */
  resume(name: string): Promise<ScheduleView> {
    return this.setPaused(name, false);
  }

  /** The schedule's audit trail: pauses, resumes, fired and skipped ticks, oldest first. */
  async events(name: string, options: { afterId?: number; limit?: number } = {}): Promise<ScheduleEvent[]> {
    this.registry.schedule(name);
    return listScheduleEvents(this.pool, name, options.afterId ?? 0, Math.min(Math.max(options.limit ?? 1000, 1), 5000));
  }

  private async setPaused(name: string, paused: boolean): Promise<ScheduleView> {
    const schedule = this.registry.schedule(name);
    const changed = await commit(this.unitOfWork, async ({ client }) => {
      await ensureSchedules(client, [{ name, paused: schedule.paused, nextFireAt: schedule.nextTick(this.options.now()) }]);
      const row = await lockSchedule(client, name);
      // Pausing a paused schedule changes nothing and is not an event.
      if (!row || row.paused === paused) return { value: false };
      await setSchedulePaused(client, name, paused);
      await recordScheduleEvent(client, { name, from: paused ? 'ACTIVE' : 'PAUSED', to: paused ? 'PAUSED' : 'ACTIVE' });
      return { value: true };
    });
    if (changed) this.logger.info(`schedule ${paused ? 'paused' : 'resumed'}`, { schedule: name });
    return this.get(name);
  }

  private async rows(declared: readonly RegisteredSchedule[], now: Date): Promise<Map<string, ScheduleRow>> {
    // A schedule seen for the first time starts from now: its past ticks are not "missed".
    const seen = declared.map((s) => ({ name: s.name, paused: s.paused, nextFireAt: s.nextTick(now) }));
    await commit(this.unitOfWork, async ({ client }) => ({ value: await ensureSchedules(client, seen) }));
    const rows = await listScheduleRows(
      this.pool,
      declared.map((s) => s.name),
    );
    return new Map(rows.map((row) => [row.name, row]));
  }

  private async sweepOne(schedule: RegisteredSchedule, row: ScheduleRow, now: Date, report: ScheduleSweepReport): Promise<void> {
    const cursor = row.next_fire_at;
    if (!cursor) return;
    if (cursor > now) {
      // A cursor in the future is the next tick, unless the cron or timezone changed since it was set.
      const expected = schedule.nextTick(now);
      if (expected?.getTime() !== cursor.getTime()) {
        await commit(this.unitOfWork, async ({ client }) => ({ value: await moveCursor(client, schedule.name, cursor, expected) }));
      }
      return;
    }
    const plan = planTicks(schedule, cursor, now, schedule.catchUpSeconds ?? this.options.catchUpSeconds);
    const submitted = plan.fire ? await this.submit(schedule.jobType, schedule.parameters, tickKey(schedule.name, plan.fire)) : undefined;
    const fired = plan.fire && submitted ? { at: plan.fire, jobId: submitted.job.jobId } : undefined;
    const won = await commit(this.unitOfWork, async ({ client }) => {
      if (!(await advanceSchedule(client, { name: schedule.name, expectedNext: cursor, next: plan.next, fired }))) return { value: false };
      if (plan.skipped)
        await recordScheduleEvent(client, {
          name: schedule.name,
          from: null,
          to: 'SKIPPED',
          detail: { ...plan.skipped, reason: 'outside the catch-up window or older than the latest due tick' },
        });
      if (fired)
        await recordScheduleEvent(client, {
          name: schedule.name,
          from: null,
          to: 'FIRED',
          detail: { tick: fired.at, jobId: fired.jobId, created: submitted?.created },
        });
      return { value: true };
    });
    if (!won) {
      report.lostRaces++;
      return;
    }
    if (plan.skipped) {
      report.skipped.push({ name: schedule.name, ...plan.skipped });
      this.logger.warn('schedule ticks skipped', {
        schedule: schedule.name,
        first: plan.skipped.first.toISOString(),
        last: plan.skipped.last.toISOString(),
        count: plan.skipped.count,
      });
    }
    if (fired && submitted) {
      report.fired.push({ name: schedule.name, tick: fired.at, jobId: fired.jobId, created: submitted.created });
      this.logger.info('schedule fired', { schedule: schedule.name, tick: fired.at.toISOString(), jobId: fired.jobId });
    }
  }
}

function view(schedule: RegisteredSchedule, row: ScheduleRow | undefined): ScheduleView {
  const paused = row?.paused ?? schedule.paused;
  return {
    name: schedule.name,
    cron: schedule.cron,
    timezone: schedule.timezone,
    jobType: schedule.jobType,
    parameters: schedule.parameters,
    catchUpSeconds: schedule.catchUpSeconds ?? null,
    paused,
    // While paused nothing fires; the stored cursor would suggest otherwise.
    nextFireAt: paused ? null : (row?.next_fire_at ?? null),
    lastFireAt: row?.last_fire_at ?? null,
    lastJobId: row?.last_job_id ?? null,
    lastJobStatus: row?.last_job_status ?? null,
  };
}
