/**
 * Browser-side helpers shared by the dashboard views: DOM building, the API client, formatting,
 * the confirmation dialog and the router. Plain ES2020 in a string: it ships inside dist with no
 * bundler. Written without backticks so it can live in a template literal.
 *
 * Safety rule: data from the API only ever reaches the page as text (textContent, text nodes,
 * attribute values via setAttribute), never as markup.
 */
export const clientCore = String.raw`
const KEY = new URLSearchParams(location.search).get('code') || '';
// The page lives at <prefix>/dashboard; the API routes share the prefix (api by default).
const API = location.pathname.replace(/\/dashboard\/?$/, '');
const JOB_STATUSES = ['QUEUED', 'PROCESSING', 'PAUSED', 'COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED'];
const TASK_STATUSES = ['QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'];
const ACTIVE = ['QUEUED', 'PROCESSING', 'PAUSED'];

/** el('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more]) */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'text') node.textContent = String(value);
    // Through CSSOM: the page's CSP forbids style attributes, not style properties set by script.
    else if (name === 'style') Object.assign(node.style, value);
    else if (name === 'disabled' || name === 'selected' || name === 'checked') node[name] = Boolean(value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

/**
 * Replaces a node's children. Use this, never node.replaceChildren directly: the native one turns
 * null into the text "null" and arrays into "[object ...]", and el()-style children have both.
 */
function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replaces a container's children without losing keyboard focus: an element with
 * data-focus-key that had focus is focused again in the new content.
 */
function replaceKeepingFocus(container, children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.getAttribute('data-focus-key') : null;
  fill(container, children);
  if (key) {
    const again = container.querySelector('[data-focus-key="' + CSS.escape(key) + '"]');
    if (again) again.focus();
  }
}

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || ('HTTP ' + status));
    this.status = status;
    this.type = error.type || 'HttpError';
    this.details = error;
  }
}

async function api(method, path, body) {
  const headers = { 'x-functions-key': KEY };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(API + path, { method, headers, body, cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, { error: { type: 'NetworkError', message: 'could not reach the API: ' + String(error && error.message || error) } });
  }
  let parsed = null;
  const text = await response.text();
  try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = { error: { type: 'BadResponse', message: text.slice(0, 500) } }; }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  const text = search.toString();
  return text ? '?' + text : '';
}

const pad = (n) => String(n).padStart(2, '0');
function formatTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}
function formatDuration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return '—';
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.round((s % 3600) / 60) + ' min';
}
function between(startIso, endIso) {
  if (!startIso) return null;
  return (endIso ? new Date(endIso).getTime() : Date.now()) - new Date(startIso).getTime();
}
function age(iso) {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return Math.floor(s / 86400) + ' d ago';
}
const timeCell = (iso) => iso ? el('time', { datetime: iso, title: formatTime(iso) }, formatTime(iso)) : '—';
const json = (value) => JSON.stringify(value === undefined ? null : value, null, 2);
const badge = (status) => el('span', { class: 'badge s-' + status }, status);

function errorBox(error) {
  const details = error.details || {};
  const extra = {};
  for (const name of ['issues', 'cause', 'stage', 'taskId', 'failures']) if (details[name] !== undefined) extra[name] = details[name];
  return el('div', { class: 'error-box', role: 'alert' },
    el('strong', {}, error.type || 'Error'), ': ', error.message,
    error.status ? el('span', { class: 'muted' }, ' (HTTP ' + error.status + ')') : null,
    Object.keys(extra).length ? el('pre', {}, json(extra)) : null);
}

const liveRegion = () => document.getElementById('live');
/** Polite announcements for screen readers of what the operator did and what it changed. */
function announce(text) { liveRegion().textContent = text; }
/** The quiet "updated at" line: deliberately not a live region, it changes every second. */
function markUpdated() { document.getElementById('updated').textContent = 'Updated ' + formatTime(new Date().toISOString()); }

/** A modal confirmation (native dialog: focus trapped, Escape dismisses). Resolves true on confirm. */
function confirmAction(title, text, confirmLabel) {
  const dialog = document.getElementById('confirm');
  return new Promise((resolve) => {
    const dismiss = el('button', { type: 'button', onclick: () => dialog.close('dismiss') }, 'Go back');
    const confirm = el('button', { type: 'button', class: 'primary danger', onclick: () => dialog.close('confirm') }, confirmLabel);
    fill(dialog,
      el('h2', { id: 'confirm-title' }, title),
      el('p', { id: 'confirm-text' }, text),
      el('div', { class: 'actions' }, confirm, dismiss));
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.showModal();
    // The harmless choice has focus, so a stray Enter does not cancel a job.
    dismiss.focus();
  });
}

/**
 * Runs work now and then every intervalMs while keepGoing() says so. One run at a time: a kick
 * during a run schedules exactly one more, so slow responses never pile up requests.
 */
function poller(work, intervalMs, keepGoing) {
  let timer = null;
  let running = false;
  let again = false;
  let stopped = true;
  const tick = async () => {
    timer = null;
    if (stopped) return;
    if (running) { again = true; return; }
    running = true;
    try { if (!document.hidden) await work(); } finally { running = false; }
    if (stopped) return;
    if (again) { again = false; void tick(); return; }
    if (keepGoing()) timer = setTimeout(tick, intervalMs);
  };
  return {
    kick() { stopped = false; if (timer) clearTimeout(timer); timer = null; void tick(); },
    stop() { stopped = true; if (timer) clearTimeout(timer); timer = null; },
  };
}
`;
