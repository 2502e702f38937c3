import { api, asApiError } from './api';
import { el, fill, replaceKeepingFocus } from './dom';
import { age, formatTime } from './format';
import { announce, badge, confirmAction, errorBox } from './ui';
import type { ScheduleJson } from './wire';

/**
 * The schedules declared in code (GET /api/schedules): next and last fire, the last job they
 * started, and pause/resume (each confirmed; recorded in the event trail by the server).
 */
export function schedulesPanel(): { section: HTMLElement; load: () => Promise<void> } {
  const tbody = el('tbody', { id: 'schedule-rows' });
  const out = el('div');
  let lastRendered = '';
  const col = (text: string) => el('th', { scope: 'col' }, text);
  const section = el(
    'section',
    { class: 'panel', 'aria-labelledby': 'schedules-heading' },
    el('h2', { id: 'schedules-heading' }, 'Schedules'),
    out,
    el(
      'table',
      {},
      el('caption', { class: 'sr-only' }, 'Schedules declared in code'),
      el('thead', {}, el('tr', {}, col('Name'), col('Cron'), col('Job type'), col('State'), col('Next fire'), col('Last fire'), col('Last job'), col(''))),
      tbody,
    ),
  );

  const when = (iso: string | null) => (iso ? el('time', { datetime: iso, title: formatTime(iso) }, age(iso)) : el('span', { class: 'muted' }, '—'));

  function row(schedule: ScheduleJson): HTMLElement {
    const action = schedule.paused ? 'resume' : 'pause';
    const button = el(
      'button',
      { type: 'button', 'data-schedule-action': action, onclick: () => void toggle(schedule, action) },
      schedule.paused ? 'Resume' : 'Pause',
    );
    return el(
      'tr',
      { 'data-schedule': schedule.name },
      el('td', { class: 'mono' }, schedule.name),
      el('td', { class: 'mono', title: schedule.timezone }, `${schedule.cron} (${schedule.timezone})`),
      el('td', {}, schedule.jobType),
      el('td', {}, schedule.paused ? badge('PAUSED') : el('span', {}, 'active')),
      el('td', {}, when(schedule.nextFireAt)),
      el('td', {}, when(schedule.lastFireAt)),
      el(
        'td',
        {},
        schedule.lastJobId
          ? el(
              'a',
              { href: `#/jobs/${encodeURIComponent(schedule.lastJobId)}`, class: 'mono', title: schedule.lastJobId },
              `${schedule.lastJobId.slice(0, 12)}…`,
              schedule.lastJobStatus ? [' ', badge(schedule.lastJobStatus)] : null,
            )
          : el('span', { class: 'muted' }, 'none yet'),
      ),
      el('td', {}, button),
    );
  }

  async function toggle(schedule: ScheduleJson, action: 'pause' | 'resume'): Promise<void> {
    const text =
      action === 'pause'
        ? 'No new jobs start from it until it is resumed.'
        : 'It fires from its next tick; ticks missed while paused are skipped beyond the catch-up window.';
    if (
      !(await confirmAction(
        `${action === 'pause' ? 'Pause' : 'Resume'} schedule ${schedule.name}?`,
        text,
        action === 'pause' ? 'Pause schedule' : 'Resume schedule',
      ))
    )
      return;
    try {
      await api<ScheduleJson>('POST', `/schedules/${encodeURIComponent(schedule.name)}/${action}`);
      announce(`Schedule ${schedule.name} ${action === 'pause' ? 'paused' : 'resumed'}`);
    } catch (error) {
      fill(out, errorBox(asApiError(error)));
    }
    lastRendered = '';
    await load();
  }

  async function load(): Promise<void> {
    try {
      const { schedules } = await api<{ schedules: ScheduleJson[] }>('GET', '/schedules');
      const signature = JSON.stringify(schedules) + String(Math.floor(Date.now() / 60000));
      if (signature === lastRendered) return;
      lastRendered = signature;
      fill(out);
      replaceKeepingFocus(
        tbody,
        schedules.length
          ? schedules.map(row)
          : [el('tr', {}, el('td', { colspan: '8', class: 'muted' }, 'No schedules are declared (see defineSchedule in jobs/).'))],
      );
    } catch (error) {
      fill(out, errorBox(asApiError(error)));
    }
  }

  return { section, load };
}
