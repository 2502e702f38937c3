import type { ApiError } from './api';
import { byId, el, fill, type Child } from './dom';
import { formatTime, json } from './format';

export const timeCell = (iso: string | null): Child => (iso ? el('time', { datetime: iso, title: formatTime(iso) }, formatTime(iso)) : '—');
export const badge = (status: string): HTMLElement => el('span', { class: `badge s-${status}` }, status);

/** An error as text, with the fields that help (zod issues, cause, where it happened). */
export function errorBox(error: Pick<ApiError, 'type' | 'message'> & { status?: number; details?: Record<string, unknown> }): HTMLElement {
  const details = error.details ?? {};
  const extra: Record<string, unknown> = {};
  for (const name of ['issues', 'cause', 'stage', 'taskId', 'failures']) if (details[name] !== undefined) extra[name] = details[name];
  return el(
    'div',
    { class: 'error-box', role: 'alert' },
    el('strong', {}, error.type || 'Error'),
    ': ',
    error.message,
    error.status ? el('span', { class: 'muted' }, ` (HTTP ${error.status})`) : null,
    Object.keys(extra).length ? el('pre', {}, json(extra)) : null,
  );
}

/** Polite announcements for screen readers of what the operator did and what it changed. */
export function announce(text: string): void {
  byId('live').textContent = text;
}

/** The quiet "updated at" line: deliberately not a live region, it changes every second. */
export function markUpdated(): void {
  byId('updated').textContent = `Updated ${formatTime(new Date().toISOString())}`;
}

/** A modal confirmation (native dialog: focus trapped, Escape dismisses). Resolves true on confirm. */
export function confirmAction(title: string, text: string, confirmLabel: string): Promise<boolean> {
  const dialog = byId<HTMLDialogElement>('confirm');
  return new Promise((resolve) => {
    const dismiss = el('button', { type: 'button', onclick: () => dialog.close('dismiss') }, 'Go back');
    const confirm = el('button', { type: 'button', class: 'primary danger', onclick: () => dialog.close('confirm') }, confirmLabel);
    fill(dialog, el('h2', { id: 'confirm-title' }, title), el('p', { id: 'confirm-text' }, text), el('div', { class: 'actions' }, confirm, dismiss));
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.showModal();
    // The harmless choice has focus, so a stray Enter does not cancel a job.
    dismiss.focus();
  });
}
