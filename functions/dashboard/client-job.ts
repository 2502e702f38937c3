/**
 * The job view (#/jobs/ID): summary, control buttons, one bar per stage, result or error,
 * parameters, a paged tasks table and the event trail. Polls every second while the job can
 * still change (QUEUED, PROCESSING, PAUSED); stops once it ends.
 */
export const clientJob = String.raw`
const TASK_PAGE = 100;
const EVENTS_SHOWN = 200;
const EVENTS_KEPT = 5000;
const CONTROL = {
  cancel: { allowed: ['QUEUED', 'PROCESSING', 'PAUSED'], label: 'Cancel', title: 'Cancel this job?', confirm: 'Cancel job',
    text: 'Queued tasks are cancelled and running tasks are aborted. A cancelled job cannot be resumed or retried.' },
  pause: { allowed: ['QUEUED', 'PROCESSING'], label: 'Pause', title: 'Pause this job?', confirm: 'Pause job',
    text: 'No new tasks start; tasks already running finish. Resume continues where it stopped.' },
  resume: { allowed: ['PAUSED'], label: 'Resume', title: 'Resume this job?', confirm: 'Resume job',
    text: 'The job is queued again and its unfinished tasks run.' },
  retry: { allowed: ['FAILED'], label: 'Retry', title: 'Retry the failed stage?', confirm: 'Retry stage',
    text: 'The failed and cancelled tasks of the failed stage run again; completed work is kept.' },
};

function jobView(root, jobId) {
  let job = null;
  let gone = false;
  let tasks = [];
  let taskRequest = 0;
  let events = [];
  let lastEventId = 0;
  let eventsTrimmed = false;
  const drawn = {};

  const heading = el('h2', { id: 'job-heading', tabindex: '-1' }, 'Job');
  const statusLine = el('p', { id: 'job-status', role: 'status', 'aria-live': 'polite' });
  const pageOut = el('div');
  const actionOut = el('div');
  const buttons = {};
  for (const [action, spec] of Object.entries(CONTROL)) {
    buttons[action] = el('button', { type: 'button', id: 'action-' + action, class: action === 'cancel' ? 'danger' : '', disabled: true, onclick: () => act(action) }, spec.label);
  }
  const summary = el('dl', { class: 'summary' });
  const stages = el('div', { id: 'stages' });
  const outcome = el('div', { id: 'outcome' });
  const parameters = el('pre', { id: 'parameters' }, '…');
  const stageSelect = el('select', { id: 'task-stage', onchange: () => loadTasks(false, true) }, el('option', { value: 'current' }, 'Current stage'));
  const taskStatus = el('select', { id: 'task-status', onchange: () => loadTasks(false, true) },
    el('option', { value: '' }, 'Any status'), TASK_STATUSES.map((s) => el('option', { value: s }, s)));
  const taskRows = el('tbody', { id: 'task-rows' });
  const taskNote = el('span', { class: 'muted' });
  const moreTasks = el('button', { type: 'button', onclick: () => loadTasks(true, false) }, 'Load more tasks');
  const eventFilter = el('select', { id: 'event-filter', onchange: () => drawEvents(true) },
    el('option', { value: '' }, 'All'), el('option', { value: 'job,stage' }, 'Job and stage only'), el('option', { value: 'task' }, 'Tasks only'));
  const eventRows = el('tbody', { id: 'event-rows' });
  const eventNote = el('p', { class: 'muted' });

  const th = (text, cls) => el('th', { scope: 'col', class: cls }, text);
  root.append(
    el('p', {}, el('a', { href: '#/' }, '← All jobs')),
    el('section', { class: 'panel', 'aria-labelledby': 'job-heading' },
      heading, el('p', { class: 'mono muted' }, jobId), statusLine, pageOut,
      el('div', { class: 'actions', role: 'group', 'aria-label': 'Job controls' }, Object.values(buttons)),
      actionOut, el('h3', {}, 'Summary'), summary),
    el('section', { class: 'panel', 'aria-labelledby': 'stages-heading' }, el('h3', { id: 'stages-heading' }, 'Stages'), stages),
    el('section', { class: 'panel', 'aria-labelledby': 'outcome-heading' }, el('h3', { id: 'outcome-heading' }, 'Result or error'), outcome),
    el('section', { class: 'panel', 'aria-labelledby': 'tasks-heading' },
      el('h3', { id: 'tasks-heading' }, 'Tasks'),
      el('div', { class: 'row' },
        el('div', {}, el('label', { for: 'task-stage' }, 'Stage'), stageSelect),
        el('div', {}, el('label', { for: 'task-status' }, 'Task status'), taskStatus)),
      el('div', { class: 'scroll' }, el('table', {},
        el('thead', {}, el('tr', {}, th('#', 'num'), th('Status'), th('Attempt', 'num'), th('Started'), th('Finished'), th('Duration', 'num'), th('Error'))),
        taskRows)),
      el('div', { class: 'pager' }, moreTasks, taskNote)),
    el('section', { class: 'panel', 'aria-labelledby': 'events-heading' },
      el('h3', { id: 'events-heading' }, 'Event trail'),
      el('div', { class: 'row' }, el('div', {}, el('label', { for: 'event-filter' }, 'Show'), eventFilter)),
      eventNote,
      el('div', { class: 'scroll' }, el('table', {},
        el('thead', {}, el('tr', {}, th('#', 'num'), th('Time'), th('Entity'), th('Stage', 'num'), th('Task'), th('Transition'), th('Attempt', 'num'), th('Error'))),
        eventRows))),
    el('section', { class: 'panel', 'aria-labelledby': 'params-heading' }, el('h3', { id: 'params-heading' }, 'Parameters'), parameters));

  /** Rebuilds a part only when its data changed, so selections and scroll positions survive polling. */
  function draw(name, data, build) {
    const signature = JSON.stringify(data);
    if (drawn[name] === signature) return;
    drawn[name] = signature;
    build();
  }

  function stageRow(n) {
    const s = job.stages.find((p) => p.stage === n);
    if (!s) {
      return el('div', { class: 'stage', 'data-stage': n, 'data-status': 'PENDING' },
        el('div', {}, el('strong', {}, 'Stage ' + n), ' ', badge('PENDING')),
        el('div', { class: 'bar', role: 'progressbar', 'aria-label': 'Stage ' + n + ' progress', 'aria-valuemin': '0', 'aria-valuemax': '1', 'aria-valuenow': '0', 'aria-valuetext': 'not started' }),
        el('div', { class: 'muted' }, 'not started'));
    }
    const done = s.completed + s.failed;
    const pct = (count) => (s.total === 0 ? (count === s.completed ? 100 : 0) : (100 * count) / s.total) + '%';
    const text = s.completed + '/' + s.total + ' completed · ' + s.failed + ' failed';
    return el('div', { class: 'stage', 'data-stage': n, 'data-status': s.status },
      el('div', {}, el('strong', {}, 'Stage ' + n + ' · ' + s.name), ' ', badge(s.status)),
      el('div', { class: 'bar', role: 'progressbar', 'aria-label': 'Stage ' + n + ' ' + s.name + ' progress', 'aria-valuemin': '0', 'aria-valuemax': String(s.total), 'aria-valuenow': String(done), 'aria-valuetext': text },
        el('div', { class: 'done', style: { width: pct(s.completed) } }), el('div', { class: 'failed', style: { width: pct(s.failed) } })),
      el('div', { class: 'mono' }, text, s.startedAt ? el('span', { class: 'muted' }, ' · ' + formatDuration(between(s.startedAt, s.finishedAt))) : null));
  }

  function drawJob() {
    const previous = heading.getAttribute('data-status');
    fill(heading, job.jobType + ' ', badge(job.status));
    heading.setAttribute('data-status', job.status);
    if (previous !== job.status) {
      // Announced once per change, not on every poll.
      statusLine.textContent = 'Status: ' + job.status + ' — stage ' + job.stage + ' of ' + job.totalStages;
      document.title = job.jobType + ' ' + job.status + ' · CoreMachine';
    }
    for (const [action, spec] of Object.entries(CONTROL)) {
      const allowed = spec.allowed.includes(job.status);
      buttons[action].disabled = !allowed;
      buttons[action].title = allowed ? '' : spec.label + ' needs status ' + spec.allowed.join(' or ');
    }
    const item = (term, value) => [el('dt', {}, term), el('dd', {}, value)];
    fill(summary, ...[
      item('Type', job.jobType), item('Status', badge(job.status)),
      item('Stage', 'stage ' + job.stage + ' of ' + job.totalStages), item('Duration', formatDuration(between(job.createdAt, job.finishedAt))),
      item('Created', timeCell(job.createdAt)), item('Started', timeCell(job.startedAt)),
      item('Finished', timeCell(job.finishedAt)), item('Updated', timeCell(job.updatedAt)),
    ].flat());
    fill(stages, ...Array.from({ length: job.totalStages }, (_, i) => stageRow(i + 1)));
    draw('outcome', [job.result, job.error], () => fill(outcome,
      job.error ? el('div', { class: 'error-box' }, el('strong', {}, job.error.type), ': ', job.error.message) : null,
      job.error ? el('pre', { 'aria-label': 'Error details' }, json(job.error)) : null,
      job.result !== null && job.result !== undefined ? el('pre', { id: 'result', 'aria-label': 'Result' }, json(job.result)) : null,
      !job.error && (job.result === null || job.result === undefined) ? el('p', { class: 'muted' }, ACTIVE.includes(job.status) ? 'No result yet.' : 'No result.') : null));
    draw('parameters', job.parameters, () => { parameters.textContent = json(job.parameters); });
    draw('stage-options', job.totalStages, () => {
      const keep = stageSelect.value;
      fill(stageSelect, el('option', { value: 'current' }, 'Current stage'),
        Array.from({ length: job.totalStages }, (_, i) => el('option', { value: String(i + 1) }, 'Stage ' + (i + 1))));
      stageSelect.value = keep;
    });
  }

  function taskRow(t) {
    return el('tr', { 'data-task-status': t.status },
      el('td', { class: 'num', title: t.taskId }, String(t.taskIndex)),
      el('td', {}, badge(t.status)),
      el('td', { class: 'num' }, String(t.attempt)),
      el('td', {}, timeCell(t.startedAt)), el('td', {}, timeCell(t.finishedAt)),
      el('td', { class: 'num' }, formatDuration(between(t.startedAt, t.finishedAt))),
      el('td', {}, t.error ? el('span', { title: json(t.error) }, t.error.type + ': ' + t.error.message) : ''));
  }

  /** more: append the next page; reset: the filters changed, start from the first page. */
  async function loadTasks(more, reset) {
    if (!job) return;
    const stage = stageSelect.value === 'current' ? job.stage : Number(stageSelect.value);
    const progress = job.stages.find((s) => s.stage === stage);
    const request = ++taskRequest;
    if (reset) tasks = [];
    if (!progress) {
      tasks = [];
      fill(taskRows, el('tr', {}, el('td', { colspan: '7', class: 'muted' }, 'Stage ' + stage + ' has not started.')));
      taskNote.textContent = '';
      moreTasks.hidden = true;
      return;
    }
    const afterIndex = more && tasks.length ? tasks[tasks.length - 1].taskIndex : -1;
    // A refresh re-reads what is shown (at least one page), capped at the API's 5000 limit.
    const limit = more ? TASK_PAGE : Math.min(5000, Math.max(TASK_PAGE, tasks.length));
    try {
      const data = await api('GET', '/jobs/' + encodeURIComponent(jobId) + '/tasks' + query({ stage, status: taskStatus.value, limit, afterIndex }));
      if (request !== taskRequest) return;
      tasks = more ? tasks.concat(data.tasks) : data.tasks;
      const full = data.tasks.length === limit;
      fill(taskRows, ...(tasks.length ? tasks.map(taskRow) : [el('tr', {}, el('td', { colspan: '7', class: 'muted' }, 'No tasks match.'))]));
      const of = taskStatus.value ? '' : ' of ' + progress.total;
      taskNote.textContent = 'Showing ' + tasks.length + of + ' tasks in stage ' + stage + (taskStatus.value ? ' with status ' + taskStatus.value : '');
      moreTasks.hidden = !full;
    } catch (error) {
      if (request === taskRequest) fill(taskRows, el('tr', {}, el('td', { colspan: '7' }, errorBox(error))));
    }
  }

  function eventRow(e) {
    const task = e.taskId && e.taskId.startsWith(jobId + '-') ? e.taskId.slice(jobId.length + 1) : e.taskId;
    return el('tr', { 'data-entity': e.entity },
      el('td', { class: 'num' }, String(e.id)), el('td', {}, timeCell(e.at)), el('td', {}, e.entity),
      el('td', { class: 'num' }, e.stage === null ? '' : String(e.stage)), el('td', { class: 'mono', title: e.taskId || '' }, task || ''),
      el('td', {}, (e.from || '∅') + ' → ' + e.to), el('td', { class: 'num' }, e.attempt === null ? '' : String(e.attempt)),
      el('td', {}, e.error ? e.error.type + ': ' + e.error.message : ''));
  }

  function drawEvents(force) {
    if (force) drawn.events = '';
    const wanted = eventFilter.value ? eventFilter.value.split(',') : null;
    const matching = wanted ? events.filter((e) => wanted.includes(e.entity)) : events;
    const shown = matching.slice(-EVENTS_SHOWN).reverse();
    draw('events', [lastEventId, eventFilter.value], () => {
      fill(eventRows, ...(shown.length ? shown.map(eventRow) : [el('tr', {}, el('td', { colspan: '8', class: 'muted' }, 'No events.'))]));
      eventNote.textContent = 'Newest first. Showing ' + shown.length + ' of ' + matching.length + ' events' + (eventsTrimmed ? ' (older events not kept in this page)' : '') + '.';
    });
  }

  async function loadEvents() {
    // Only what is new since the last poll; a big job catches up over a few polls.
    for (let round = 0; round < 5; round++) {
      const data = await api('GET', '/jobs/' + encodeURIComponent(jobId) + '/events' + query({ afterId: lastEventId, limit: 1000 }));
      if (!data.events.length) break;
      events = events.concat(data.events);
      lastEventId = data.events[data.events.length - 1].id;
      if (data.events.length < 1000) break;
    }
    if (events.length > EVENTS_KEPT) { events = events.slice(-EVENTS_KEPT); eventsTrimmed = true; }
    drawEvents(false);
  }

  async function refresh() {
    try {
      job = await api('GET', '/jobs/' + encodeURIComponent(jobId));
      fill(pageOut);
      drawJob();
      await Promise.all([loadTasks(false, false), loadEvents()]);
      markUpdated();
    } catch (error) {
      gone = error.status === 404;
      fill(pageOut, errorBox(error));
    }
  }

  async function act(action) {
    const spec = CONTROL[action];
    if (!(await confirmAction(spec.title, spec.text + ' Job ' + jobId.slice(0, 12) + '… (' + (job ? job.jobType : '') + ').', spec.confirm))) return;
    fill(actionOut);
    try {
      job = await api('POST', '/jobs/' + encodeURIComponent(jobId) + '/' + action);
      drawJob();
      announce(spec.label + ' done: the job is ' + job.status);
    } catch (error) {
      fill(actionOut, errorBox(error));
      announce(spec.label + ' refused: ' + error.message);
    }
    // Retry and resume make a finished poll live again.
    poll.kick();
  }

  const poll = poller(refresh, 1000, () => !gone && (job === null || ACTIVE.includes(job.status)));
  poll.kick();
  return { stop: () => poll.stop(), kick: () => poll.kick(), heading, title: 'Job ' + jobId.slice(0, 12) };
}
`;
