/**
 * The slice of a job's event trail the page holds: newest first, contiguous, with a flag for
 * whether older events exist. A big job (30,000 events) must show its newest events — the
 * cancellation, the failure — at once, so the page reads from the newest end (order=desc) and
 * goes back page by page; it never walks the whole trail from the start. DOM-free.
 */
export const EVENT_PAGE = 200;
/** Live polling prepends; beyond this the oldest loaded events are dropped ("load older" re-reads them). */
export const EVENTS_KEPT = 2000;

export interface EventWindow<E extends { id: number }> {
  /** Newest first; ids strictly decreasing with no gaps in what the API would return. */
  readonly events: readonly E[];
  readonly hasOlder: boolean;
}

export const emptyWindow = <E extends { id: number }>(): EventWindow<E> => ({ events: [], hasOlder: false });

/** The afterId for the next poll: everything newer than what is held. */
export const newestId = (window: EventWindow<{ id: number }>): number => window.events[0]?.id ?? 0;
/** The beforeId for "load older". */
export const oldestId = (window: EventWindow<{ id: number }>): number | undefined => window.events[window.events.length - 1]?.id;

/**
 * Applies a poll's answer (order=desc, afterId=newestId, limit). A full page may not reach back
 * to what is held — events in between would be missing — so it replaces the window instead.
 */
export function withNewer<E extends { id: number }>(window: EventWindow<E>, fetched: readonly E[], limit: number): EventWindow<E> {
  if (fetched.length >= limit) return { events: fetched, hasOlder: true };
  if (fetched.length === 0) return window;
  const events = fetched.concat(window.events);
  if (events.length <= EVENTS_KEPT) return { events, hasOlder: window.hasOlder };
  return { events: events.slice(0, EVENTS_KEPT), hasOlder: true };
}

/**
 * Applies a "load older" answer (order=desc, beforeId, limit). Ignored when the window moved on
 * while it was in flight (a poll replaced it), so the trail never gets a gap or a duplicate.
 */
export function withOlder<E extends { id: number }>(window: EventWindow<E>, beforeId: number, fetched: readonly E[], limit: number): EventWindow<E> {
  if (oldestId(window) !== beforeId) return window;
  return { events: window.events.concat(fetched), hasOlder: fetched.length >= limit };
}
