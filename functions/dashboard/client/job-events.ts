import { api } from './api';
import { el, fill } from './dom';
import { EVENT_PAGE, emptyWindow, newestId, oldestId, withNewer, withOlder, type EventWindow } from './event-window';
import { announce, errorBox, timeCell } from './ui';
import { asApiError } from './api';
import { query } from './urls';
import type { EventJson } from './wire';

export interface EventsPanel {
  readonly section: HTMLElement;
  /** Fetches what is newer than the newest event held (the first call: the newest page). */
  poll(): Promise<void>;
}

/**
 * The job's event trail, newest first. Reads from the newest end of the trail (order=desc), so a
 * job with tens of thousands of events shows its latest transitions at once; "Load older events"
 * goes back a page at a time with beforeId.
 */
export function eventsPanel(jobId: string): EventsPanel {
  let trail: EventWindow<EventJson> = emptyWindow();
  let drawn = '';
  const path = (params: Record<string, number | string | undefined>) =>
    `/jobs/${encodeURIComponent(jobId)}/events${query({ order: 'desc', limit: EVENT_PAGE, ...params })}`;

  const filter = el(
    'select',
    { id: 'event-filter', onchange: () => draw(true) },
    el('option', { value: '' }, 'All'),
    el('option', { value: 'job,stage' }, 'Job and stage only'),
    el('option', { value: 'task' }, 'Tasks only'),
  );
  const rows = el('tbody', { id: 'event-rows' });
  const note = el('p', { id: 'event-note', class: 'muted' });
  const older = el('button', { type: 'button', id: 'events-older', hidden: true, onclick: () => void loadOlder() }, 'Load older events');
  const out = el('div');
  const th = (text: string, cls?: string) => el('th', { scope: 'col', class: cls }, text);
  const section = el(
    'section',
    { class: 'panel', 'aria-labelledby': 'events-heading' },
    el('h3', { id: 'events-heading' }, 'Event trail'),
    el('div', { class: 'row' }, el('div', {}, el('label', { for: 'event-filter' }, 'Show'), filter)),
    note,
    out,
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        {},
        el(
          'thead',
          {},
          el('tr', {}, th('#', 'num'), th('Time'), th('Entity'), th('Stage', 'num'), th('Task'), th('Transition'), th('Attempt', 'num'), th('Error')),
        ),
        rows,
      ),
    ),
    el('div', { class: 'pager' }, older),
  );

  function row(e: EventJson): HTMLElement {
    // A signal's event names the signal where a task's names the task.
    const task = e.signal ?? (e.taskId?.startsWith(`${jobId}-`) ? e.taskId.slice(jobId.length + 1) : e.taskId);
    return el(
      'tr',
      { 'data-entity': e.entity, 'data-event-id': e.id },
      el('td', { class: 'num' }, String(e.id)),
      el('td', {}, timeCell(e.at)),
      el('td', {}, e.entity),
      el('td', { class: 'num' }, e.stage === null ? '' : String(e.stage)),
      el('td', { class: 'mono', title: e.taskId ?? '' }, task ?? ''),
      el('td', {}, `${e.from ?? '∅'} → ${e.to}`),
      el('td', { class: 'num' }, e.attempt === null ? '' : String(e.attempt)),
      el('td', {}, e.error ? `${e.error.type}: ${e.error.message}` : ''),
    );
  }

  /** Redraws only when the trail or the filter changed, so scroll position survives polling. */
  function draw(force: boolean): void {
    const wanted = filter.value ? filter.value.split(',') : null;
    const signature = `${newestId(trail)}:${oldestId(trail) ?? 0}:${trail.hasOlder}:${filter.value}`;
    if (!force && signature === drawn) return;
    drawn = signature;
    const shown = wanted ? trail.events.filter((e) => wanted.includes(e.entity)) : trail.events;
    fill(rows, shown.length ? shown.map(row) : el('tr', {}, el('td', { colspan: '8', class: 'muted' }, 'No events.')));
    const which = wanted ? `${shown.length} matching of the ` : '';
    note.textContent = `Newest first. Showing ${which}${trail.events.length} most recent events${trail.hasOlder ? '; older events exist' : ' (the whole trail)'}.`;
    older.hidden = !trail.hasOlder;
  }

  async function poll(): Promise<void> {
    const after = newestId(trail);
    const fetched = await api<{ events: EventJson[] }>('GET', path({ afterId: after || undefined }));
    trail = withNewer(trail, fetched.events, EVENT_PAGE);
    draw(false);
  }

  async function loadOlder(): Promise<void> {
    const before = oldestId(trail);
    if (before === undefined) return;
    older.disabled = true;
    fill(out);
    try {
      const fetched = await api<{ events: EventJson[] }>('GET', path({ beforeId: before }));
      trail = withOlder(trail, before, fetched.events, EVENT_PAGE);
      draw(false);
      announce(`Loaded ${fetched.events.length} older events`);
    } catch (error) {
      fill(out, errorBox(asApiError(error)));
    } finally {
      older.disabled = false;
    }
  }

  return { section, poll };
}
