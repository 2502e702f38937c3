import { TASK_STATUSES } from '../../../models/status-values';
import { api, asApiError } from './api';
import { el, fill } from './dom';
import { between, formatDuration, json } from './format';
import { badge, errorBox, timeCell } from './ui';
import { taskLogView, type TaskLogView } from './task-logs';
import { query } from './urls';
import type { JobJson, TaskJson } from './wire';

const TASK_PAGE = 100;
/** The API's cap on one tasks request. */
const TASK_LIMIT = 5000;

export interface TasksPanel {
  readonly section: HTMLElement;
  /** more: append the next page; reset: the filters changed, start from the first page. */
  load(job: JobJson, more: boolean, reset: boolean): Promise<void>;
  /** Keeps the stage choices in step with the job's stage count. */
  setStageCount(count: number): void;
}

/** The paged tasks table of one job, filtered by stage and status. */
export function tasksPanel(jobId: string, currentJob: () => JobJson | null): TasksPanel {
  let tasks: TaskJson[] = [];
  let request = 0;
  /** The tasks whose log lines are open, by task id: kept across refreshes, read again when a task logs more. */
  const openLogs = new Map<string, TaskLogView>();
  const reload = (more: boolean, reset: boolean) => {
    const job = currentJob();
    if (job) void load(job, more, reset);
  };
  const stageSelect = el('select', { id: 'task-stage', onchange: () => reload(false, true) }, el('option', { value: 'current' }, 'Current stage'));
  const statusSelect = el(
    'select',
    { id: 'task-status', onchange: () => reload(false, true) },
    el('option', { value: '' }, 'Any status'),
    TASK_STATUSES.map((s) => el('option', { value: s }, s)),
  );
  const rows = el('tbody', { id: 'task-rows' });
  const note = el('span', { class: 'muted' });
  const more = el('button', { type: 'button', onclick: () => reload(true, false) }, 'Load more tasks');
  const th = (text: string, cls?: string) => el('th', { scope: 'col', class: cls }, text);
  const section = el(
    'section',
    { class: 'panel', 'aria-labelledby': 'tasks-heading' },
    el('h3', { id: 'tasks-heading' }, 'Tasks'),
    el(
      'div',
      { class: 'row' },
      el('div', {}, el('label', { for: 'task-stage' }, 'Stage'), stageSelect),
      el('div', {}, el('label', { for: 'task-status' }, 'Task status'), statusSelect),
    ),
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        {},
        el(
          'thead',
          {},
          el('tr', {}, th('#', 'num'), th('Status'), th('Attempt', 'num'), th('Started'), th('Finished'), th('Duration', 'num'), th('Error'), th('Logs')),
        ),
        rows,
      ),
    ),
    el('div', { class: 'pager' }, more, note),
  );

  const message = (child: Node | string) => el('tr', {}, el('td', { colspan: '8', class: typeof child === 'string' ? 'muted' : undefined }, child));

  const render = () => fill(rows, tasks.length ? tasks.map(row) : message('No tasks match.'));

  function toggleLogs(taskId: string): void {
    if (openLogs.has(taskId)) openLogs.delete(taskId);
    else openLogs.set(taskId, taskLogView(jobId, taskId));
    render();
  }

  /** The task's row, and below it its log lines when they are open. */
  function row(t: TaskJson): HTMLElement[] {
    const logs = openLogs.get(t.taskId);
    if (logs) logs.show(t.logs?.lines ?? 0);
    const main = el(
      'tr',
      { 'data-task-status': t.status },
      el('td', { class: 'num', title: t.taskId }, String(t.taskIndex)),
      // A task of a limited type names its slot key: a QUEUED one may be waiting for a free slot.
      el(
        'td',
        { title: t.limitKey ? `counts against the concurrency limit of ${t.limitKey}` : undefined },
        badge(t.status),
        t.limitKey ? el('span', { class: 'muted' }, ` slot ${t.limitKey}`) : '',
      ),
      // A lease lost to a host that died is not an attempt: counted beside it, when there was one.
      el(
        'td',
        { class: 'num', title: t.leaseLosses > 0 ? `${t.leaseLosses} lease(s) lost to a host that died or stopped renewing; not attempts` : undefined },
        String(t.attempt),
        t.leaseLosses > 0 ? el('span', { class: 'muted', 'data-lease-losses': String(t.leaseLosses) }, ` +${t.leaseLosses} lost`) : '',
      ),
      el('td', {}, timeCell(t.startedAt)),
      el('td', {}, timeCell(t.finishedAt)),
      el('td', { class: 'num' }, formatDuration(between(t.startedAt, t.finishedAt))),
      el('td', {}, t.error ? el('span', { title: json(t.error) }, `${t.error.type}: ${t.error.message}`) : ''),
      // Only a task that logged (ctx.log) has lines to open; dropped ones are counted beside them.
      el(
        'td',
        {},
        t.logs
          ? el(
              'button',
              { type: 'button', 'aria-expanded': logs ? 'true' : 'false', 'data-logs-for': t.taskId, onclick: () => toggleLogs(t.taskId) },
              `${t.logs.lines} line(s)${t.logs.dropped > 0 ? `, ${t.logs.dropped} dropped` : ''}`,
            )
          : '',
      ),
    );
    return logs ? [main, el('tr', { class: 'task-logs' }, el('td', { colspan: '8' }, logs.element))] : [main];
  }

  async function load(job: JobJson, loadMore: boolean, reset: boolean): Promise<void> {
    const stage = stageSelect.value === 'current' ? job.stage : Number(stageSelect.value);
    const progress = job.stages.find((s) => s.stage === stage);
    const mine = ++request;
    if (reset) tasks = [];
    if (!progress) {
      tasks = [];
      fill(rows, message(`Stage ${stage} has not started.`));
      note.textContent = '';
      more.hidden = true;
      return;
    }
    const afterIndex = loadMore ? (tasks[tasks.length - 1]?.taskIndex ?? -1) : -1;
    // A refresh re-reads what is shown (at least one page), capped at the API's limit.
    const limit = loadMore ? TASK_PAGE : Math.min(TASK_LIMIT, Math.max(TASK_PAGE, tasks.length));
    try {
      const data = await api<{ tasks: TaskJson[] }>(
        'GET',
        `/jobs/${encodeURIComponent(jobId)}/tasks${query({ stage, status: statusSelect.value, limit, afterIndex })}`,
      );
      if (mine !== request) return;
      tasks = loadMore ? tasks.concat(data.tasks) : data.tasks;
      render();
      const of = statusSelect.value ? '' : ` of ${progress.total}`;
      note.textContent = `Showing ${tasks.length}${of} tasks in stage ${stage}${statusSelect.value ? ` with status ${statusSelect.value}` : ''}`;
      more.hidden = data.tasks.length < limit;
    } catch (error) {
      if (mine === request) fill(rows, message(errorBox(asApiError(error))));
    }
  }

  let stageCount = 0;
  function setStageCount(count: number): void {
    if (count === stageCount) return;
    stageCount = count;
    const keep = stageSelect.value;
    fill(
      stageSelect,
      el('option', { value: 'current' }, 'Current stage'),
      Array.from({ length: count }, (_, i) => el('option', { value: String(i + 1) }, `Stage ${i + 1}`)),
    );
    stageSelect.value = keep;
  }

  return { section, load, setStageCount };
}
