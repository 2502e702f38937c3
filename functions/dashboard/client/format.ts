/** Times and durations as the operator reads them (local time, coarse units). DOM-free. */
const pad = (n: number): string => String(n).padStart(2, '0');

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** Milliseconds from start to end (or to now while running); null before it started. */
export function between(startIso: string | null, endIso: string | null, now = Date.now()): number | null {
  if (!startIso) return null;
  return (endIso ? new Date(endIso).getTime() : now) - new Date(startIso).getTime();
}

export function age(iso: string, now = Date.now()): string {
  const signed = Math.round((now - new Date(iso).getTime()) / 1000);
  // A time still to come (a schedule's next fire) reads "in 35 min", not "just now".
  if (signed < -4) return `in ${span(-signed)}`;
  const s = Math.max(0, signed);
  return s < 5 ? 'just now' : `${span(s)} ago`;
}

function span(s: number): string {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** A job's labels in key order (jsonb keeps its own order, shortest key first). */
export function sortedLabels(labels: Readonly<Record<string, string>>): Array<[string, string]> {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export const json = (value: unknown): string => JSON.stringify(value === undefined ? null : value, null, 2);
