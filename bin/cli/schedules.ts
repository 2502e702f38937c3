import type { ScheduleJson } from './api-client';
import { formatTime, table } from './format';
import { UsageError, type CliIo } from './io';
import type { parse as parseFn } from './remote';

type Parse = typeof parseFn;

/** `coremachine schedules`: every declared schedule, its state and what it last started. */
export async function listSchedules(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { values, clientFor } = parse(args, { json: { type: 'boolean' } }, []);
  const { schedules } = await clientFor(io).schedules();
  if (values.json === true) {
    io.out(`${JSON.stringify(schedules, null, 2)}\n`);
    return 0;
  }
  if (schedules.length === 0) {
    io.out('no schedules declared\n');
    return 0;
  }
  const rows = schedules.map((s) => [
    s.name,
    s.cron,
    s.timezone,
    s.jobType,
    s.paused ? 'paused' : 'active',
    formatTime(s.nextFireAt),
    formatTime(s.lastFireAt),
    lastJob(s),
  ]);
  io.out(`${table(['NAME', 'CRON', 'TIMEZONE', 'JOB TYPE', 'STATE', 'NEXT FIRE', 'LAST FIRE', 'LAST JOB'], rows)}\n`);
  return 0;
}

/** `coremachine schedule pause|resume <name>`. */
export async function controlSchedule(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { positionals, clientFor } = parse(args, {}, ['pause|resume', 'name']);
  const [action, name] = positionals;
  if (action !== 'pause' && action !== 'resume') throw new UsageError(`expected pause or resume, got "${action}"`);
  const schedule = await clientFor(io).scheduleControl(name ?? '', action);
  io.out(`schedule ${schedule.name} is now ${schedule.paused ? 'paused' : `active (next fire ${formatTime(schedule.nextFireAt)})`}\n`);
  return 0;
}

function lastJob(s: ScheduleJson): string {
  return s.lastJobId ? `${s.lastJobId} ${s.lastJobStatus ?? ''}`.trim() : '';
}
