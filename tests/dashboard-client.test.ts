import { apiUrl, labelFilter, parseRoute, query, routeValues } from '../functions/dashboard/client/urls';
import { age, sortedLabels } from '../functions/dashboard/client/format';
import { barWidths, countsText } from '../functions/dashboard/client/bar-widths';
import { EVENTS_KEPT, emptyWindow, newestId, oldestId, withNewer, withOlder, type EventWindow } from '../functions/dashboard/client/event-window';
import { CONTROL_ACTION_NAMES, CONTROL_ACTIONS, allowedControlActions } from '../models/control-actions';
import { ACTIVE_JOB_STATUSES, ENDED_JOB_STATUSES, FINAL_JOB_STATUSES, JOB_STATUSES, isJobTransitionAllowed } from '../models/status-values';

// The dashboard's DOM-free logic, run directly from its TypeScript sources.

test('the API base is /api on the page origin, whatever path the page was opened at', () => {
  expect(apiUrl('http://127.0.0.1:7071', '/jobs?limit=25')).toBe('http://127.0.0.1:7071/api/jobs?limit=25');
  // location.pathname of a page opened as //evil.example/api/dashboard plays no part.
  expect(apiUrl('https://app.example', '/jobs/abc/events')).toBe('https://app.example/api/jobs/abc/events');
  expect(() => apiUrl('https://app.example', '//evil.example/api')).not.toThrow();
  expect(new URL(apiUrl('https://app.example', '//evil.example/api')).host).toBe('app.example');
  expect(() => apiUrl('https://app.example', 'jobs')).toThrow('must start with /');
});

test('query keeps only set values; routes parse to the list or one job', () => {
  expect(query({ status: '', jobType: 'hello_world', limit: 25, cursor: null, x: undefined })).toBe('?jobType=hello_world&limit=25');
  expect(query({})).toBe('');
  expect(parseRoute('')).toEqual({ view: 'list', args: {} });
  expect(parseRoute('#/?status=FAILED&type=a')).toEqual({ view: 'list', args: { status: 'FAILED', type: 'a' } });
  expect(parseRoute('#/jobs/ab%2Fc')).toEqual({ view: 'job', jobId: 'ab/c' });
  expect(parseRoute('#/jobs/%E0%A4%A')).toEqual({ view: 'list', args: {} });
});

test('label filters: repeated in the route and the query, typed as key=value or key:value, shown in key order', () => {
  expect(query({ status: 'FAILED', label: ['team:data', 'url:http://x:1/'], none: [] })).toBe(
    '?status=FAILED&label=team%3Adata&label=url%3Ahttp%3A%2F%2Fx%3A1%2F',
  );
  expect(routeValues('#/?label=team%3Adata&status=FAILED&label=env:prod&label=', 'label')).toEqual(['team:data', 'env:prod']);
  expect(routeValues('#/jobs/abc', 'label')).toEqual([]);
  expect(labelFilter('team=data')).toBe('team:data');
  expect(labelFilter('url=http://x:1/?a=b')).toBe('url:http://x:1/?a=b');
  expect(labelFilter('team:a=b')).toBe('team:a=b');
  // No separator: sent as typed, for the API to refuse with its reason.
  expect(labelFilter('team')).toBe('team');
  expect(sortedLabels({ team: 'data', a: '1', env: 'prod' })).toEqual([
    ['a', '1'],
    ['env', 'prod'],
    ['team', 'data'],
  ]);
});

const ids = (window: EventWindow<{ id: number }>) => window.events.map((e) => e.id);
const desc = (from: number, count: number) => Array.from({ length: count }, (_, i) => ({ id: from - i }));

test('the event window holds the newest events, contiguous, and pages back without gaps', () => {
  const first = withNewer(emptyWindow(), desc(1000, 200), 200);
  expect([newestId(first), oldestId(first), first.hasOlder]).toEqual([1000, 801, true]);
  const older = withOlder(first, 801, desc(800, 200), 200);
  expect(ids(older)).toEqual(desc(1000, 400).map((e) => e.id));
  const last = withOlder(older, 601, desc(600, 50), 200);
  expect(last.hasOlder).toBe(false);
  // A poll with a few new events prepends them.
  const polled = withNewer(last, desc(1003, 3), 200);
  expect(ids(polled).slice(0, 4)).toEqual([1003, 1002, 1001, 1000]);
  expect(polled.hasOlder).toBe(false);
  expect(withNewer(polled, [], 200)).toBe(polled);
  // A full page may not reach back to what is held: it replaces the window rather than leave a gap.
  const jumped = withNewer(polled, desc(5000, 200), 200);
  expect([newestId(jumped), oldestId(jumped), jumped.hasOlder]).toEqual([5000, 4801, true]);
  // A "load older" answer for a window that has since moved on is dropped.
  expect(withOlder(jumped, 801, desc(800, 200), 200)).toBe(jumped);
});

test('live polling keeps at most EVENTS_KEPT events and then says older ones exist', () => {
  let window = withNewer(emptyWindow(), desc(100, 100), 200);
  expect(window.hasOlder).toBe(false);
  for (let newest = 299; newest < 100 + EVENTS_KEPT + 400; newest += 199) window = withNewer(window, desc(newest, 199), 200);
  expect(window.events).toHaveLength(EVENTS_KEPT);
  expect(window.hasOlder).toBe(true);
  expect(ids(window)).toEqual(desc(newestId(window), EVENTS_KEPT).map((e) => e.id));
});

test('every control action is a transition the job table allows, from exactly the statuses it lists', () => {
  for (const action of CONTROL_ACTION_NAMES) {
    const { from, to } = CONTROL_ACTIONS[action];
    expect(from.length).toBeGreaterThan(0);
    for (const status of from) expect(isJobTransitionAllowed(status, to)).toBe(true);
  }
  // Cancel and pause reach every status the table lets into CANCELLED / PAUSED.
  expect(CONTROL_ACTIONS.cancel.from).toEqual(JOB_STATUSES.filter((s) => isJobTransitionAllowed(s, 'CANCELLED')));
  expect(Object.fromEntries(JOB_STATUSES.map((s) => [s, allowedControlActions(s)]))).toEqual({
    QUEUED: ['cancel', 'pause'],
    PROCESSING: ['cancel', 'pause'],
    PAUSED: ['cancel', 'resume'],
    FAILED: ['retry'],
    COMPLETED: [],
    COMPLETED_WITH_ERRORS: [],
    CANCELLED: [],
  });
  for (const status of FINAL_JOB_STATUSES) expect(allowedControlActions(status)).toEqual([]);
  // One definition of "ended", read everywhere: the final statuses and FAILED; active is the rest.
  expect(FINAL_JOB_STATUSES).toEqual(['COMPLETED', 'COMPLETED_WITH_ERRORS', 'CANCELLED']);
  expect(ENDED_JOB_STATUSES).toEqual(['COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED']);
  expect([...ACTIVE_JOB_STATUSES, ...ENDED_JOB_STATUSES].sort()).toEqual([...JOB_STATUSES].sort());
});

test('ages read as past or future: a schedule\'s next fire is "in …", never "just now"', () => {
  const now = Date.parse('2026-11-30T16:24:34Z');
  expect(age('2026-11-30T16:24:33Z', now)).toBe('just now');
  expect(age('2026-11-30T16:20:00Z', now)).toBe('4 min ago');
  expect(age('2026-11-30T17:00:00Z', now)).toBe('in 35 min');
  expect(age('2026-12-02T17:00:00Z', now)).toBe('in 2 d');
});

test('a progress bar of no tasks draws empty, whatever its counts; parts are fractions of the total and never overflow', () => {
  // A PENDING stage (0 of 0) once drew half green, half red: every total-0 bar is empty.
  expect(barWidths({ total: 0, completed: 0, failed: 0 })).toEqual({ completed: 0, failed: 0 });
  expect(barWidths({ total: 0, completed: 1, failed: 1 })).toEqual({ completed: 0, failed: 0 });
  expect(barWidths({ total: 10, completed: 4, failed: 1 })).toEqual({ completed: 40, failed: 10 });
  expect(barWidths({ total: 4, completed: 4, failed: 0 })).toEqual({ completed: 100, failed: 0 });
  expect(barWidths({ total: 4, completed: 3, failed: 3 })).toEqual({ completed: 75, failed: 25 });
  expect(countsText({ total: 10, completed: 4, failed: 1 })).toBe('4/10 completed · 1 failed');
  expect(countsText({ total: 1, completed: 0, failed: 0, signal: 'approval' })).toBe('waiting for signal "approval"');
});
