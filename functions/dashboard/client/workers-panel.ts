import { api, asApiError } from './api';
import { el, fill, replaceKeepingFocus } from './dom';
import { age, formatTime } from './format';
import { badge, errorBox } from './ui';
import type { WorkerJson } from './wire';

/**
 * Who takes work (GET /api/workers): remote workers and in-process hosts, the task types each
 * takes, its last claim and heartbeat, and the tasks it holds now. A worker not heard from for a
 * minute is marked stale; the janitor removes it after its retention window. Ids, hosts and task
 * types are the workers' own text: they go into the page as text nodes (el), never as markup.
 */
export function workersPanel(): { section: HTMLElement; load: () => Promise<void> } {
  const tbody = el('tbody', { id: 'worker-rows' });
  const out = el('div');
  let lastRendered = '';
  const col = (text: string, cls?: string) => el('th', { scope: 'col', class: cls }, text);
  const section = el(
    'section',
    { class: 'panel', 'aria-labelledby': 'workers-heading' },
    el('h2', { id: 'workers-heading' }, 'Workers'),
    out,
    el(
      'table',
      {},
      el('caption', { class: 'sr-only' }, 'Remote workers and in-process hosts'),
      el('thead', {}, el('tr', {}, col('Worker'), col('Kind'), col('Task types'), col('Held', 'num'), col('Last claim'), col('Last heartbeat'), col('State'))),
      tbody,
    ),
  );

  const when = (iso: string | null) => (iso ? el('time', { datetime: iso, title: formatTime(iso) }, age(iso)) : el('span', { class: 'muted' }, '—'));

  function row(worker: WorkerJson): HTMLElement {
    return el(
      'tr',
      { 'data-worker': worker.workerId, 'data-kind': worker.kind },
      el('td', { class: 'mono', title: worker.host ?? '' }, worker.workerId),
      el('td', {}, worker.kind),
      el('td', { class: 'mono' }, worker.taskTypes.join(', ')),
      el('td', { class: 'num' }, String(worker.tasksHeld)),
      el('td', {}, when(worker.lastClaimAt)),
      el('td', {}, when(worker.lastHeartbeatAt)),
      el('td', {}, worker.stale ? badge('STALE') : el('span', {}, 'live')),
    );
  }

  async function load(): Promise<void> {
    try {
      const { workers } = await api<{ workers: WorkerJson[] }>('GET', '/workers');
      // Ages are shown coarsely: re-rendering once per ten seconds keeps them fresh enough.
      const signature = JSON.stringify(workers.map(({ heartbeatAgeSeconds: _, ...rest }) => rest)) + String(Math.floor(Date.now() / 10_000));
      if (signature === lastRendered) return;
      lastRendered = signature;
      fill(out);
      replaceKeepingFocus(
        tbody,
        workers.length
          ? workers.map(row)
          : [
              el(
                'tr',
                {},
                el('td', { colspan: '7', class: 'muted' }, 'No worker seen yet: hosts appear when they run queue tasks, remote workers when they claim.'),
              ),
            ],
      );
    } catch (error) {
      fill(out, errorBox(asApiError(error)));
    }
  }

  return { section, load };
}
