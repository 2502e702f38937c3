import { api, asApiError } from './api';
import { el, fill } from './dom';
import { formatTime } from './format';
import { errorBox } from './ui';
import { query } from './urls';
import type { TaskLogPageJson } from './wire';

/** The API's largest page of log lines; a task keeps at most 100 per attempt, so one page is nearly always all. */
const LOG_PAGE = 1000;

export interface TaskLogView {
  readonly element: HTMLElement;
  /** Shows the task's lines, reading them again only when the task has recorded more since. */
  show(recorded: number): void;
}

/**
 * One task's log lines (ctx.log), read when the operator opens them and again when the listing
 * says the task recorded more. Text only: a line's message and fields come from the handler.
 */
export function taskLogView(jobId: string, taskId: string): TaskLogView {
  const body = el('pre', { 'data-task-logs': taskId }, 'Loading…');
  const note = el('p', { class: 'muted' });
  const element = el('div', {}, body, note);
  let shown = -1;
  let request = 0;

  async function load(recorded: number): Promise<void> {
    const mine = ++request;
    try {
      const path = `/jobs/${encodeURIComponent(jobId)}/tasks/${encodeURIComponent(taskId)}/logs`;
      const pages: TaskLogPageJson[] = [];
      for (let afterSeq = 0; ;) {
        const page = await api<TaskLogPageJson>('GET', `${path}${query({ afterSeq, limit: LOG_PAGE })}`);
        pages.push(page);
        if (page.nextAfterSeq === null) break;
        afterSeq = page.nextAfterSeq;
      }
      if (mine !== request) return;
      const lines = pages.flatMap((page) => page.lines);
      fill(body, lines.length ? lines.map(formatLine).join('\n') : 'No lines kept.');
      note.textContent = dropNote(pages[0]);
      shown = recorded;
    } catch (error) {
      if (mine === request) fill(body, errorBox(asApiError(error)));
    }
  }

  return {
    element,
    show(recorded: number): void {
      if (recorded !== shown) void load(recorded);
    },
  };
}

function formatLine(line: TaskLogPageJson['lines'][number]): string {
  const fields = line.fields === null || line.fields === undefined ? '' : `  ${JSON.stringify(line.fields)}`;
  return `${formatTime(line.loggedAt)}  ${line.level.toUpperCase().padEnd(5)}  attempt ${line.attempt}  ${line.message}${fields}`;
}

/** What the caps took away: the task's attempts' oldest lines, and the job's oldest. */
function dropNote(page: TaskLogPageJson | undefined): string {
  if (!page) return '';
  const parts: string[] = [];
  if (page.dropped > 0) parts.push(`${page.dropped} older line(s) of this task were dropped over the per-attempt cap`);
  if (page.jobDropped > 0) parts.push(`the job dropped its ${page.jobDropped} oldest line(s) over its cap`);
  return parts.join('; ');
}
