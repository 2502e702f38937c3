import { CONTROL_ACTION_NAMES, CONTROL_ACTIONS, type ControlAction } from '../../../models/control-actions';
import { ACTIVE_JOB_STATUSES } from '../../../models/status-values';
import { api, asApiError } from './api';
import { countsText } from './bar-widths';
import { el, fill } from './dom';
import { between, formatDuration, json, sortedLabels } from './format';
import { eventsPanel } from './job-events';
import { tasksPanel } from './job-tasks';
import { poller } from './poller';
import { progressBar } from './progress-bar';
import { signalPanel } from './signal-form';
import { announce, badge, confirmAction, errorBox, markUpdated, timeCell } from './ui';
import { query } from './urls';
import type { View } from './view';
import type { JobJson } from './wire';

/** The words around each control action; which statuses allow it comes from models/control-actions.ts. */
const CONTROL_COPY: Record<ControlAction, { label: string; title: string; confirm: string; text: string }> = {
  cancel: {
    label: 'Cancel',
    title: 'Cancel this job?',
    confirm: 'Cancel job',
    text: 'Queued tasks are cancelled and running tasks are aborted. A cancelled job cannot be resumed or retried.',
  },
  pause: {
    label: 'Pause',
    title: 'Pause this job?',
    confirm: 'Pause job',
    text: 'No new tasks start; tasks already running finish. Resume continues where it stopped.',
  },
  resume: { label: 'Resume', title: 'Resume this job?', confirm: 'Resume job', text: 'The job is queued again and its unfinished tasks run.' },
  retry: {
    label: 'Retry',
    title: 'Retry the failed stage?',
    confirm: 'Retry stage',
    text: 'The failed and cancelled tasks of the failed stage run again; completed work is kept.',
  },
};

const isActive = (job: JobJson | null): boolean => job === null || ACTIVE_JOB_STATUSES.includes(job.status);

/**
 * The job view (#/jobs/ID): summary, control buttons, one bar per stage, result or error,
 * parameters, the tasks table and the event trail. Polls every second while the job can still
 * change by itself; stops once it cannot.
 */
export function jobView(root: HTMLElement, jobId: string): View {
  let job: JobJson | null = null;
  let gone = false;
  const drawn: Record<string, string> = {};
  const path = `/jobs/${encodeURIComponent(jobId)}`;

  const heading = el('h2', { id: 'job-heading', tabindex: '-1' }, 'Job');
  const statusLine = el('p', { id: 'job-status', role: 'status', 'aria-live': 'polite' });
  const pageOut = el('div');
  const actionOut = el('div');
  const buttons = Object.fromEntries(
    CONTROL_ACTION_NAMES.map((action) => [
      action,
      el(
        'button',
        { type: 'button', id: `action-${action}`, class: action === 'cancel' ? 'danger' : '', disabled: true, onclick: () => act(action) },
        CONTROL_COPY[action].label,
      ),
    ]),
  ) as Record<ControlAction, HTMLButtonElement>;
  // Deleting is not a status transition (models/control-actions.ts): it removes a finished job's rows.
  const deleteButton = el('button', { type: 'button', id: 'action-delete', class: 'danger', disabled: true, onclick: () => void remove() }, 'Delete');
  const summary = el('dl', { class: 'summary' });
  const stages = el('div', { id: 'stages' });
  const outcome = el('div', { id: 'outcome' });
  const parameters = el('pre', { id: 'parameters' }, '…');
  const tasks = tasksPanel(jobId, () => job);
  const events = eventsPanel(jobId);
  const signal = signalPanel(jobId, () => poll.kick());

  root.append(
    el('p', {}, el('a', { href: '#/' }, '← All jobs')),
    el(
      'section',
      { class: 'panel', 'aria-labelledby': 'job-heading' },
      heading,
      el('p', { class: 'mono muted' }, jobId),
      statusLine,
      pageOut,
      el('div', { class: 'actions', role: 'group', 'aria-label': 'Job controls' }, Object.values(buttons), deleteButton),
      actionOut,
      el('h3', {}, 'Summary'),
      summary,
    ),
    signal.section,
    el('section', { class: 'panel', 'aria-labelledby': 'stages-heading' }, el('h3', { id: 'stages-heading' }, 'Stages'), stages),
    el('section', { class: 'panel', 'aria-labelledby': 'outcome-heading' }, el('h3', { id: 'outcome-heading' }, 'Result or error'), outcome),
    tasks.section,
    events.section,
    el('section', { class: 'panel', 'aria-labelledby': 'params-heading' }, el('h3', { id: 'params-heading' }, 'Parameters'), parameters),
  );

  /** Rebuilds a part only when its data changed, so selections and scroll positions survive polling. */
  function draw(name: string, data: unknown, build: () => void): void {
    const signature = JSON.stringify(data);
    if (drawn[name] === signature) return;
    drawn[name] = signature;
    build();
  }

  function stageRow(current: JobJson, n: number): HTMLElement {
    const s = current.stages.find((p) => p.stage === n);
    if (!s) {
      return el(
        'div',
        { class: 'stage', 'data-stage': n, 'data-status': 'PENDING' },
        el('div', {}, el('strong', {}, `Stage ${n}`), ' ', badge('PENDING')),
        progressBar({ total: 0, completed: 0, failed: 0 }, `Stage ${n} progress`, 'not started'),
        el('div', { class: 'muted' }, 'not started'),
      );
    }
    const text = countsText(s);
    return el(
      'div',
      { class: 'stage', 'data-stage': n, 'data-status': s.status },
      el('div', {}, el('strong', {}, `Stage ${n} · ${s.name}`), ' ', badge(s.status)),
      progressBar(s, `Stage ${n} ${s.name} progress`, text),
      el('div', { class: 'mono' }, text, s.startedAt ? el('span', { class: 'muted' }, ` · ${formatDuration(between(s.startedAt, s.finishedAt))}`) : null),
    );
  }

  function drawJob(current: JobJson): void {
    const previous = heading.getAttribute('data-status');
    fill(heading, `${current.jobType} `, badge(current.status));
    heading.setAttribute('data-status', current.status);
    if (previous !== current.status) {
      // Announced once per change, not on every poll.
      statusLine.textContent = `Status: ${current.status} — stage ${current.stage} of ${current.totalStages}`;
      document.title = `${current.jobType} ${current.status} · CoreMachine`;
    }
    for (const action of CONTROL_ACTION_NAMES) {
      const { from } = CONTROL_ACTIONS[action];
      const allowed = from.includes(current.status);
      buttons[action].disabled = !allowed;
      buttons[action].title = allowed ? '' : `${CONTROL_COPY[action].label} needs status ${from.join(' or ')}`;
    }
    const deletable = !ACTIVE_JOB_STATUSES.includes(current.status);
    deleteButton.disabled = !deletable;
    deleteButton.title = deletable ? '' : 'Only a finished job can be deleted: cancel it first';
    const item = (term: string, value: Parameters<typeof el>[2]) => [el('dt', {}, term), el('dd', {}, value)];
    fill(
      summary,
      current.name ? item('Name', el('span', { id: 'job-name' }, current.name)) : null,
      item('Type', `${current.jobType} v${current.version}`),
      current.createdBy ? item('Created by', el('span', { id: 'job-created-by' }, current.createdBy)) : null,
      // Each label links to the list of the jobs that carry it.
      Object.keys(current.labels).length > 0
        ? item(
            'Labels',
            sortedLabels(current.labels).map(([key, value]) =>
              el('a', { class: 'chip', 'data-label': `${key}:${value}`, href: `#/${query({ label: [`${key}:${value}`] })}` }, `${key}=${value}`),
            ),
          )
        : null,
      item('Status', badge(current.status)),
      // Its version is not deployed: the job waits rather than fails (core/engine/versions.ts).
      current.waitingFor ? item('Waiting', el('span', { class: 'error-box', role: 'status' }, current.waitingFor)) : null,
      item('Stage', `stage ${current.stage} of ${current.totalStages}`),
      item('Duration', formatDuration(between(current.createdAt, current.finishedAt))),
      item('Created', timeCell(current.createdAt)),
      item('Started', timeCell(current.startedAt)),
      item('Finished', timeCell(current.finishedAt)),
      item('Updated', timeCell(current.updatedAt)),
      // Deadlines only when the job has them (models/deadline.ts): wall-clock, a pause does not stop them.
      current.deadline ? item('Deadline', [timeCell(current.deadline), ` · timeout ${current.timeoutSeconds ?? '?'} s`]) : null,
      current.stageDeadline ? item('Stage deadline', [timeCell(current.stageDeadline), ` · stage ${current.stage}`]) : null,
    );
    fill(
      stages,
      Array.from({ length: current.totalStages }, (_, i) => stageRow(current, i + 1)),
    );
    const hasResult = current.result !== null && current.result !== undefined;
    // A result in the payload store (docs/payloads.md) is not carried by the job: its link is shown instead.
    const stored = current.resultRef;
    draw('outcome', [current.result, current.error, stored?.sha256], () =>
      fill(
        outcome,
        current.error ? el('div', { class: 'error-box' }, el('strong', {}, current.error.type), ': ', current.error.message) : null,
        current.error ? el('pre', { 'aria-label': 'Error details' }, json(current.error)) : null,
        hasResult ? el('pre', { id: 'result', 'aria-label': 'Result' }, json(current.result)) : null,
        stored ? el('p', { id: 'result-ref' }, `Result: ${stored.size} bytes in the payload store, at GET ${stored.url} (SHA-256 ${stored.sha256})`) : null,
        !current.error && !hasResult && !stored ? el('p', { class: 'muted' }, isActive(current) ? 'No result yet.' : 'No result.') : null,
      ),
    );
    draw('parameters', current.parameters, () => {
      parameters.textContent = json(current.parameters);
    });
    tasks.setStageCount(current.totalStages);
    signal.update(current);
  }

  async function refresh(): Promise<void> {
    try {
      const current = await api<JobJson>('GET', path);
      job = current;
      fill(pageOut);
      drawJob(current);
      await Promise.all([tasks.load(current, false, false), events.poll()]);
      markUpdated();
    } catch (error) {
      const failure = asApiError(error);
      gone = failure.status === 404;
      fill(pageOut, errorBox(failure));
    }
  }

  async function act(action: ControlAction): Promise<void> {
    const copy = CONTROL_COPY[action];
    if (!(await confirmAction(copy.title, `${copy.text} Job ${jobId.slice(0, 12)}… (${job ? job.jobType : ''}).`, copy.confirm))) return;
    fill(actionOut);
    try {
      const current = await api<JobJson>('POST', `${path}/${action}`);
      job = current;
      drawJob(current);
      announce(`${copy.label} done: the job is ${current.status}`);
    } catch (error) {
      const failure = asApiError(error);
      fill(actionOut, errorBox(failure));
      announce(`${copy.label} refused: ${failure.message}`);
    }
    // Retry and resume make a finished poll live again.
    poll.kick();
  }

  async function remove(): Promise<void> {
    const text = `Job ${jobId.slice(0, 12)}… (${job ? job.jobType : ''}) and all its stages, tasks, events and dead letters are deleted for good.`;
    if (!(await confirmAction('Delete this job?', text, 'Delete job'))) return;
    fill(actionOut);
    try {
      await api<unknown>('DELETE', path);
      announce('Job deleted');
      location.hash = '#/';
    } catch (error) {
      const failure = asApiError(error);
      fill(actionOut, errorBox(failure));
      announce(`Delete refused: ${failure.message}`);
    }
  }

  const poll = poller(refresh, 1000, () => !gone && isActive(job));
  poll.kick();
  return { stop: () => poll.stop(), kick: () => poll.kick(), heading, title: `Job ${jobId.slice(0, 12)}` };
}
