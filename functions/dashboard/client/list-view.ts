import { JOB_STATUSES } from '../../../models/status-values';
import { api, asApiError } from './api';
import { countsText } from './bar-widths';
import { el, fill, replaceKeepingFocus } from './dom';
import { age, between, formatDuration, formatTime, sortedLabels } from './format';
import { poller } from './poller';
import { progressBar } from './progress-bar';
import { announce, badge, errorBox, markUpdated } from './ui';
import { labelFilter, query, routeValues } from './urls';
import type { View } from './view';
import { schedulesPanel } from './schedules-panel';
import { workersPanel } from './workers-panel';
import type { JobJson, JobListJson, JobPage } from './wire';

/**
 * The job list view (#/ and #/?status=&type=&label=k:v): a submit form, filters, newest-first jobs with
 * paging by the API's nextCursor, refreshed while the first page is shown.
 */
const JOB_PAGE = 25;
const knownTypes = new Set<string>();

export function jobListView(root: HTMLElement, args: Record<string, string>): View {
  // Labels repeat in the route (#/?label=a:1&label=b:2); Route's args keep one value per name, so they are read from the hash.
  const filters = { status: args.status ?? '', type: args.type ?? '', labels: routeValues(location.hash, 'label') };
  // cursors[i] is the cursor that fetches page i; page 0 has none. Going back pops the stack.
  let cursors: (string | null)[] = [null];
  let page = 0;
  let nextCursor: string | null = null;
  let lastRendered = '';

  const typeList = el('datalist', { id: 'known-types' });
  const schedules = schedulesPanel();
  const workers = workersPanel();
  const submitType = el('input', {
    id: 'submit-type',
    name: 'jobType',
    list: 'known-types',
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'e.g. hello_world',
  });
  const submitParams = el('textarea', { id: 'submit-params', name: 'parameters', rows: '3', spellcheck: 'false', 'aria-describedby': 'submit-help' });
  submitParams.value = '{}';
  const submitKey = el('input', {
    id: 'submit-key',
    name: 'idempotencyKey',
    maxlength: '200',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'optional',
  });
  const submitButton = el('button', { type: 'submit', class: 'primary' }, 'Submit job');
  const submitOut = el('div', { id: 'submit-result' });

  const statusSelect = el(
    'select',
    { id: 'filter-status', name: 'status' },
    el('option', { value: '' }, 'Any status'),
    JOB_STATUSES.map((s) => el('option', { value: s, selected: s === filters.status }, s)),
  );
  const typeInput = el('input', { id: 'filter-type', name: 'type', list: 'known-types', autocomplete: 'off', spellcheck: 'false' });
  typeInput.value = filters.type;
  const labelInput = el('input', { id: 'filter-label', name: 'label', autocomplete: 'off', spellcheck: 'false', placeholder: 'key=value' });
  const activeLabels = el('p', { id: 'active-labels', 'aria-label': 'Label filters' });

  const tbody = el('tbody', { id: 'job-rows' });
  const listOut = el('div');
  const newer = el('button', { type: 'button', onclick: () => goTo(page - 1) }, '← Newer');
  const older = el('button', { type: 'button', onclick: () => goTo(page + 1) }, 'Older →');
  const pageLabel = el('span', { class: 'muted' });

  const heading = el('h2', { id: 'jobs-heading', tabindex: '-1' }, 'Jobs');
  const col = (text: string, cls?: string) => el('th', { scope: 'col', class: cls }, text);
  root.append(
    el(
      'section',
      { class: 'panel', 'aria-labelledby': 'submit-heading' },
      el('h2', { id: 'submit-heading' }, 'Submit a job'),
      el(
        'form',
        { id: 'submit-form', onsubmit: onSubmit },
        el(
          'div',
          { class: 'row top' },
          el('div', {}, el('label', { for: 'submit-type' }, 'Job type'), submitType),
          el('div', { class: 'grow' }, el('label', { for: 'submit-params' }, 'Parameters (JSON)'), submitParams),
          el('div', {}, el('label', { for: 'submit-key' }, 'Idempotency key'), submitKey),
          el('div', { class: 'after-label' }, submitButton),
        ),
        el(
          'p',
          { id: 'submit-help', class: 'muted' },
          'The body of POST /api/jobs/{type}. Submitting the same type, parameters and key again returns the existing job; another idempotency key runs it again.',
        ),
      ),
      submitOut,
      typeList,
    ),
    schedules.section,
    workers.section,
    el(
      'section',
      { class: 'panel', 'aria-labelledby': 'jobs-heading' },
      heading,
      el(
        'form',
        { class: 'row', onsubmit: onFilter, 'aria-label': 'Filter jobs' },
        el('div', {}, el('label', { for: 'filter-status' }, 'Status'), statusSelect),
        el('div', {}, el('label', { for: 'filter-type' }, 'Job type'), typeInput),
        el('div', {}, el('label', { for: 'filter-label' }, 'Label'), labelInput),
        el('div', {}, el('button', { type: 'submit' }, 'Apply filters')),
        el('div', {}, el('button', { type: 'button', onclick: clearFilters }, 'Clear')),
      ),
      activeLabels,
      listOut,
      el(
        'div',
        {},
        el(
          'table',
          {},
          el('caption', { class: 'sr-only' }, 'Jobs, newest first'),
          el(
            'thead',
            {},
            el(
              'tr',
              {},
              col('Job'),
              col('Name · labels'),
              col('Type'),
              col('Status'),
              col('Priority'),
              col('Progress'),
              col('Created'),
              col('Duration', 'num'),
            ),
          ),
          tbody,
        ),
      ),
      el('nav', { class: 'pager', 'aria-label': 'Job list pages' }, newer, older, pageLabel),
    ),
  );

  /**
   * The bar of the stage the job is at, not one for the whole job: a later stage's task count is
   * unknown until it fans out, so a job-wide fraction would run backwards at every stage advance
   * (10 of 10, then 10 of 110). The current stage's bar only moves forward, shows at once where
   * tasks fail, and "stage n of N" under it says how far along the job is. A stage not started yet
   * (progress null: the job was just submitted, or is between stages) draws an empty bar.
   */
  function progressCell(job: JobListJson): HTMLElement {
    const where = `stage ${job.stage} of ${job.totalStages}`;
    const counts = job.progress ?? { total: 0, completed: 0, failed: 0 };
    const text = job.progress ? countsText(job.progress) : 'not started';
    return el(
      'td',
      { class: 'progress' },
      progressBar(counts, `Progress of job ${job.jobId.slice(0, 12)}`, `${where}: ${text}`),
      el('div', { class: 'mono small' }, `${where} · ${text}`),
    );
  }

  /** Priority as a badge and the fairness key as text, only for a job in the fair-share scheme (models/job-priority.ts). */
  function priorityCell(job: JobListJson): HTMLElement {
    return el(
      'td',
      {},
      job.priority ? el('span', { class: 'prio', 'data-priority': job.priority, title: 'Priority' }, job.priority) : null,
      job.fairnessKey
        ? el('div', { class: 'mono small', 'data-fairness-key': job.fairnessKey, title: `Fairness key (weight ${job.fairnessWeight ?? 1})` }, job.fairnessKey)
        : null,
    );
  }

  function row(job: JobListJson): HTMLElement {
    const short = job.jobId.slice(0, 12);
    return el(
      'tr',
      { 'data-job-id': job.jobId },
      el(
        'td',
        {},
        el(
          'a',
          {
            href: `#/jobs/${encodeURIComponent(job.jobId)}`,
            class: 'mono',
            title: job.jobId,
            'data-focus-key': job.jobId,
            'aria-label': `${job.jobType} job ${short}`,
          },
          `${short}…`,
        ),
      ),
      el(
        'td',
        {},
        job.name ? el('div', { class: 'job-name' }, job.name) : null,
        // A label is a button: it narrows the list to the jobs that carry it.
        sortedLabels(job.labels).map(([key, value]) =>
          el(
            'button',
            {
              type: 'button',
              class: 'chip',
              'data-label': `${key}:${value}`,
              title: 'Show only jobs with this label',
              onclick: () => addLabel(`${key}:${value}`),
            },
            `${key}=${value}`,
          ),
        ),
      ),
      el('td', {}, job.jobType),
      el('td', {}, badge(job.status)),
      priorityCell(job),
      progressCell(job),
      el('td', {}, el('time', { datetime: job.createdAt, title: formatTime(job.createdAt) }, age(job.createdAt))),
      el('td', { class: 'num' }, formatDuration(between(job.createdAt, job.finishedAt))),
    );
  }

  async function load(): Promise<void> {
    try {
      const search = query({ status: filters.status, jobType: filters.type, label: filters.labels, limit: JOB_PAGE, cursor: cursors[page] });
      const data = await api<JobPage>('GET', `/jobs${search}`);
      nextCursor = data.nextCursor;
      fill(listOut);
      for (const job of data.jobs) knownTypes.add(job.jobType);
      fill(
        typeList,
        [...knownTypes].sort().map((t) => el('option', { value: t })),
      );
      // Ages move every second; only redraw when the data or the minute changed, so focus and
      // reading position stay put.
      const signature = JSON.stringify(data.jobs) + String(Math.floor(Date.now() / 60000));
      if (signature !== lastRendered) {
        lastRendered = signature;
        replaceKeepingFocus(
          tbody,
          data.jobs.length
            ? data.jobs.map(row)
            : [
                el(
                  'tr',
                  {},
                  el(
                    'td',
                    { colspan: '8', class: 'muted' },
                    filters.status || filters.type || filters.labels.length > 0 ? 'No jobs match these filters.' : 'No jobs yet: submit one above.',
                  ),
                ),
              ],
        );
      }
      // Which request these rows answer: lets tests (and curious operators) tell a stale page from a fresh one.
      tbody.setAttribute('data-query', search);
      newer.disabled = page === 0;
      older.disabled = !nextCursor;
      pageLabel.textContent = `Page ${page + 1}${data.jobs.length ? ` · ${data.jobs.length} jobs` : ''}`;
      markUpdated();
    } catch (error) {
      fill(listOut, errorBox(asApiError(error)));
    }
  }

  function goTo(target: number): void {
    if (target < 0) return;
    if (target > page) {
      if (!nextCursor) return;
      cursors = cursors.slice(0, target);
      cursors.push(nextCursor);
    }
    page = target;
    lastRendered = '';
    poll.kick();
  }

  function setFilters(next: Record<string, string>): void {
    filters.status = next.status ?? '';
    filters.type = next.type ?? '';
    filters.labels = routeValues(location.hash, 'label');
    statusSelect.value = filters.status;
    typeInput.value = filters.type;
    drawLabelFilters();
    cursors = [null];
    page = 0;
    lastRendered = '';
    poll.kick();
  }

  function onFilter(event: Event): void {
    event.preventDefault();
    const typed = labelFilter(labelInput.value.trim());
    labelInput.value = '';
    const labels = typed && !filters.labels.includes(typed) ? [...filters.labels, typed] : filters.labels;
    showFiltered({ status: statusSelect.value, type: typeInput.value.trim() }, labels);
  }

  /** The list with these filters: pushState, not location.hash, so the view updates in place and Back still restores them. */
  function showFiltered(next: { status: string; type: string }, labels: readonly string[]): void {
    history.pushState(null, '', `#/${query({ ...next, label: labels })}`);
    setFilters(next);
  }

  function addLabel(label: string): void {
    if (!filters.labels.includes(label)) showFiltered({ status: filters.status, type: filters.type }, [...filters.labels, label]);
  }

  function removeLabel(label: string): void {
    showFiltered(
      { status: filters.status, type: filters.type },
      filters.labels.filter((held) => held !== label),
    );
  }

  /** The label filters in force, each a button that removes it, written as the rows write labels (key=value). */
  function drawLabelFilters(): void {
    fill(
      activeLabels,
      filters.labels.length > 0 ? 'Labels: ' : null,
      filters.labels.map((label) => {
        const shown = label.replace(':', '=');
        return el(
          'button',
          { type: 'button', class: 'chip', 'data-label': label, 'aria-label': `Remove label filter ${shown}`, onclick: () => removeLabel(label) },
          `${shown} ✕`,
        );
      }),
    );
  }

  function clearFilters(): void {
    history.pushState(null, '', '#/');
    setFilters({});
  }

  async function onSubmit(event: Event): Promise<void> {
    event.preventDefault();
    fill(submitOut);
    let parameters: unknown;
    try {
      parameters = JSON.parse(submitParams.value);
    } catch (error) {
      fill(
        submitOut,
        errorBox({ type: 'InvalidJsonError', message: `Parameters are not valid JSON: ${error instanceof Error ? error.message : String(error)}` }),
      );
      submitParams.focus();
      return;
    }
    submitButton.disabled = true;
    try {
      const key = submitKey.value.trim();
      const job = await api<JobJson>(
        'POST',
        `/jobs/${encodeURIComponent(submitType.value.trim())}`,
        JSON.stringify(parameters),
        key ? { 'idempotency-key': key } : {},
      );
      announce(`Submitted ${job.jobType} job ${job.jobId.slice(0, 12)} (${job.status})`);
      location.hash = `#/jobs/${encodeURIComponent(job.jobId)}`;
    } catch (error) {
      const failure = asApiError(error);
      fill(submitOut, errorBox(failure));
      announce(`Submit failed: ${failure.type}`);
    } finally {
      submitButton.disabled = false;
    }
  }

  drawLabelFilters();
  // Only the first page refreshes by itself: older pages are history and must not shift under the reader.
  const poll = poller(
    async () => {
      await Promise.all([load(), schedules.load(), workers.load()]);
    },
    3000,
    () => page === 0,
  );
  poll.kick();
  return { update: setFilters, stop: () => poll.stop(), kick: () => poll.kick(), heading, title: 'Jobs' };
}
