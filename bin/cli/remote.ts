import { DEFAULT_API_URL, remoteSettings } from '../../core/config';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApiClient, ApiError, type EventJson } from './api-client';
import { checkApiUrl, INSECURE_HTTP_FLAG } from './api-origin';
import { describeError, errorCell, formatDuration, formatTime, shortTaskId, table } from './format';
import { UsageError, type CliIo } from './io';
import { renderStages } from './progress';
import { printOutcome, watchJob } from './watch';
import { waitForJob } from './wait';
import { controlSchedule, listSchedules } from './schedules';
import { listWorkers } from './workers';
import { listJobTypes, showJobType } from './job-types';
import { jsonFromFlags } from './json-input';
import { sendSignal } from './signal';
import { showLogs } from './logs';
import { rerunTasks } from './rerun';
import { bulkJobs } from './bulk';
import { awaitedSignal } from '../../models/signal-wait';
import { CONTROL_ACTION_NAMES, isControlAction, type ControlAction } from '../../models/control-actions';
import { oneLine } from './visible';
import { formatLabels, labelFilters, labelPairs } from './job-labels';

/** Synopsis and meaning per command; the control actions (models/control-actions.ts) share one entry. */
const USAGE_LINES: Record<string, [string, string]> = {
  submit: [
    'submit <jobType> --params JSON | --file F [--idempotency-key K] [--timeout-seconds S] [--job-version N] [--name N] [--created-by X] [--label k=v]... [--priority high|normal|low] [--fairness-key K [--fairness-weight W]] [--watch|--wait]',
    'submit a job; --watch shows progress, --wait waits quietly until it ends',
  ],
  status: ['status <jobId> [--json]', 'the job, its stages, result or error'],
  jobs: ['jobs [--status S] [--type T] [--label k=v]... [--created-by X] [--name PREFIX] [--limit N] [--cursor C]', 'jobs, newest first'],
  tasks: ['tasks <jobId> [--stage N] [--status S] [--limit N]', 'tasks with attempts, timings and errors'],
  events: ['events <jobId>', 'the audit trail of every transition'],
  logs: ['logs <jobId> [--task T | --stage N] [--json]', "what the job's handlers logged (ctx.log), task by task"],
  cancel: [`${CONTROL_ACTION_NAMES.join('|')} <jobId>`, 'control a job'],
  schedules: ['schedules [--json]', 'declared schedules: next and last fire, last job'],
  schedule: ['schedule pause|resume <name>', 'pause or resume a schedule'],
  workers: ['workers [--json]', 'remote workers and in-process hosts: task types, last heartbeat, tasks held'],
  delete: ['delete <jobId>', 'delete a finished job and all its rows'],
  rerun: [
    'rerun <jobId> --stage N [--task ID]... [--status COMPLETED|FAILED] [--result-field path=value] [--dry-run] [--json]',
    'run chosen tasks of a finished stage again; recompute the stages after it and finalize',
  ],
  bulk: [
    'bulk cancel|retry|delete [--job-type T] [--status S]... [--label k=v]... [--since ISO] [--until ISO] [--limit N] [--cursor C] [--dry-run] [--json]',
    'an action on every job the filters match (at least one filter); --dry-run says what would change',
  ],
  signal: ['signal <jobId> <name> --data JSON | --file F', 'deliver a signal to the stage waiting for it'],
  'job-types': ['job-types [--json]', 'the job types the app registers: stages, signals, description'],
  'job-type': ['job-type <jobType> [--version N]', 'one job type with the JSON Schema of its parameters and signals'],
};
/** Usage lines with the synopses in one column (run-cli's local commands use it too). */
export function usageLine(synopsis: string, meaning: string): string {
  return `  ${synopsis.padEnd(54)} ${meaning}`;
}
export const REMOTE_USAGE: readonly string[] = Object.values(USAGE_LINES).map(([synopsis, meaning]) => usageLine(synopsis, meaning));
export const REMOTE_COMMANDS: readonly string[] = [
  'submit',
  'status',
  'jobs',
  'tasks',
  'events',
  'logs',
  ...CONTROL_ACTION_NAMES,
  'schedules',
  'schedule',
  'workers',
  'delete',
  'signal',
  'job-types',
  'job-type',
  'rerun',
  'bulk',
];
export const REMOTE_OPTIONS_USAGE = [
  `remote options: --url URL (env COREMACHINE_URL, default ${DEFAULT_API_URL}), --key KEY (env COREMACHINE_FUNCTION_KEY)`,
  `  ${INSECURE_HTTP_FLAG}: allow an http:// URL to another machine (the key and data travel unencrypted; use https)`,
  '  redirects are not followed: the key is sent only to the --url origin',
].join('\n');

type Values = Record<string, string | boolean | Array<string | boolean> | undefined>;
type OptionSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>;

/** Runs one HTTP command. Exit codes: 0 done, 1 the API said no (or the job did not complete), 2 usage. */
export async function runRemote(command: string, args: readonly string[], io: CliIo): Promise<number> {
  try {
    return await dispatch(command, args, io);
  } catch (error) {
    const [synopsis, meaning] = USAGE_LINES[isControlAction(command) ? 'cancel' : command] ?? [command, ''];
    if (error instanceof HelpRequested) {
      io.out(`usage: coremachine ${synopsis}\n  ${meaning}\n${REMOTE_OPTIONS_USAGE}\n`);
      return 0;
    }
    if (error instanceof UsageError) {
      io.err(`coremachine ${command}: ${error.message}\nusage: coremachine ${synopsis}\n${REMOTE_OPTIONS_USAGE}\n`);
      return 2;
    }
    if (error instanceof ApiError) {
      io.err(`${describeError(error.error, error.status)}\n`);
      return 1;
    }
    throw error;
  }
}

/** --help anywhere on the line: the command's usage on stdout, exit 0, nothing sent. */
class HelpRequested extends Error {}

interface Parsed {
  values: Values;
  positionals: string[];
  /** The client for --url/--key, else COREMACHINE_URL/COREMACHINE_FUNCTION_KEY, else localhost. */
  clientFor: (io: CliIo) => ApiClient;
}

/** Strict: an unknown flag or a missing argument is a usage error, never silently ignored. */
export function parse(args: readonly string[], options: OptionSpec, positionalNames: readonly string[]): Parsed {
  const config: ParseArgsConfig = {
    args: [...args],
    options: { url: { type: 'string' }, key: { type: 'string' }, 'insecure-http': { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...options },
    strict: true,
    allowPositionals: true,
  };
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs(config);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (parsed.values.help === true) throw new HelpRequested();
  if (parsed.positionals.length !== positionalNames.length) {
    const expected = positionalNames.length === 0 ? 'no arguments' : positionalNames.map((name) => `<${name}>`).join(' ');
    throw new UsageError(`expected ${expected}, got ${parsed.positionals.length === 0 ? 'none' : parsed.positionals.map((p) => JSON.stringify(p)).join(' ')}`);
  }
  const clientFor = (io: CliIo) => {
    const settings = remoteSettings(io.env);
    const flag = str(parsed.values, 'url');
    const baseUrl = flag ?? settings.apiUrl;
    // Before any request: the key goes to this origin only, and over http only to this machine.
    checkApiUrl(
      baseUrl,
      flag !== undefined ? '--url' : io.env.COREMACHINE_URL !== undefined ? 'COREMACHINE_URL' : 'the default URL',
      parsed.values['insecure-http'] === true,
    );
    return new ApiClient({ baseUrl, functionKey: str(parsed.values, 'key') ?? settings.functionKey });
  };
  return { ...parsed, clientFor };
}

function str(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A repeatable string flag's values, in the order given. */
function strs(values: Values, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

async function dispatch(command: string, args: readonly string[], io: CliIo): Promise<number> {
  if (isControlAction(command)) return control(command, args, io);
  switch (command) {
    case 'submit':
      return submit(args, io);
    case 'status':
      return status(args, io);
    case 'jobs':
      return jobs(args, io);
    case 'tasks':
      return tasks(args, io);
    case 'events':
      return events(args, io);
    case 'logs':
      return showLogs(args, io, parse);
    case 'schedules':
      return listSchedules(args, io, parse);
    case 'schedule':
      return controlSchedule(args, io, parse);
    case 'workers':
      return listWorkers(args, io, parse);
    case 'delete':
      return deleteJob(args, io);
    case 'signal':
      return sendSignal(args, io, parse);
    case 'job-types':
      return listJobTypes(args, io, parse);
    case 'job-type':
      return showJobType(args, io, parse);
    case 'rerun':
      return rerunTasks(args, io, parse);
    case 'bulk':
      return bulkJobs(args, io, parse);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

async function submit(args: readonly string[], io: CliIo): Promise<number> {
  // --idempotency-key, not --key: --key is the function key on every command.
  const options = {
    params: { type: 'string' },
    file: { type: 'string' },
    watch: { type: 'boolean' },
    wait: { type: 'boolean' },
    'idempotency-key': { type: 'string' },
    'timeout-seconds': { type: 'string' },
    'job-version': { type: 'string' },
    name: { type: 'string' },
    'created-by': { type: 'string' },
    label: { type: 'string', multiple: true },
    priority: { type: 'string' },
    'fairness-key': { type: 'string' },
    'fairness-weight': { type: 'string' },
  } as const;
  const { values, positionals, clientFor } = parse(args, options, ['jobType']);
  if (values.watch === true && values.wait === true) throw new UsageError('give at most one of --watch and --wait');
  const parameters = jsonFromFlags({ flag: 'params', value: str(values, 'params') }, str(values, 'file'));
  const client = clientFor(io);
  // The server checks --timeout-seconds (bounds and the job type's own timeout) and --job-version, and answers 400 or 404 with why.
  const { job, created } = await client.submit(positionals[0] ?? '', parameters, {
    idempotencyKey: str(values, 'idempotency-key'),
    timeoutSeconds: str(values, 'timeout-seconds'),
    version: str(values, 'job-version'),
    name: str(values, 'name'),
    createdBy: str(values, 'created-by'),
    labels: labelPairs(strs(values, 'label')),
    priority: str(values, 'priority'),
    fairnessKey: str(values, 'fairness-key'),
    fairnessWeight: str(values, 'fairness-weight'),
  });
  io.out(
    created
      ? `submitted ${job.jobType} job ${job.jobId} (${job.status})\n`
      : `${job.jobType} job ${job.jobId} already exists with these parameters (${job.status})\n`,
  );
  if (values.wait === true) return waitForJob(client, job.jobId, io);
  return values.watch === true ? watchJob(client, job.jobId, io) : 0;
}

/** The job's deadlines, when it has any: the whole job's and its current stage's. */
function deadlineLines(job: { timeoutSeconds: number | null; deadline: string | null; stageDeadline: string | null; stage: number }): string[] {
  const lines: string[] = [];
  if (job.deadline) lines.push(`deadline  ${formatTime(job.deadline)} (timeout ${job.timeoutSeconds ?? '?'} s)`);
  if (job.stageDeadline) lines.push(`stage deadline ${formatTime(job.stageDeadline)} (stage ${job.stage})`);
  return lines;
}

async function status(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals, clientFor } = parse(args, { json: { type: 'boolean' } }, ['jobId']);
  const job = await clientFor(io).job(positionals[0] ?? '');
  if (values.json === true) {
    io.out(`${JSON.stringify(job, null, 2)}\n`);
    return 0;
  }
  // One field per line: what the server sends is folded (oneLine) so it cannot print lines of its own.
  io.out(
    [
      `job       ${oneLine(job.jobId)}`,
      ...(job.name === null ? [] : [`name      ${oneLine(job.name)}`]),
      `type      ${oneLine(job.jobType)} v${job.version}`,
      `status    ${oneLine(job.status)}`,
      ...(job.waitingFor ? [`waiting   ${oneLine(job.waitingFor)}`] : []),
      `stage     ${job.stage} of ${job.totalStages}`,
      ...(job.createdBy === null ? [] : [`createdBy ${oneLine(job.createdBy)}`]),
      ...(Object.keys(job.labels).length === 0 ? [] : [`labels    ${formatLabels(job.labels)}`]),
      ...(job.priority === null
        ? []
        : [`priority  ${oneLine(job.priority)}${job.fairnessKey ? ` key ${oneLine(job.fairnessKey)} weight ${job.fairnessWeight ?? 1}` : ''}`]),
      `created   ${formatTime(job.createdAt)}`,
      `started   ${formatTime(job.startedAt)}`,
      `finished  ${formatTime(job.finishedAt)}`,
      ...deadlineLines(job),
      `params    ${JSON.stringify(job.parameters)}`,
      ...renderStages(job).split('\n').slice(1),
      '',
    ].join('\n'),
  );
  const awaited = awaitedSignal(job);
  if (awaited) {
    const name = oneLine(awaited.name);
    io.out(`waiting for signal "${name}" at stage ${awaited.stage}: coremachine signal ${oneLine(job.jobId)} ${name} --data '{...}'\n`);
  }
  if (job.error || job.result !== null) printOutcome(job, io);
  return 0;
}

async function jobs(args: readonly string[], io: CliIo): Promise<number> {
  const opts = {
    status: { type: 'string' },
    type: { type: 'string' },
    label: { type: 'string', multiple: true },
    'created-by': { type: 'string' },
    name: { type: 'string' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
  } as const;
  const { values, clientFor } = parse(args, opts, []);
  const page = await clientFor(io).jobs({
    status: str(values, 'status'),
    jobType: str(values, 'type'),
    label: labelFilters(labelPairs(strs(values, 'label'))),
    createdBy: str(values, 'created-by'),
    name: str(values, 'name'),
    limit: str(values, 'limit'),
    cursor: str(values, 'cursor'),
  });
  if (page.jobs.length === 0) {
    io.out('no jobs\n');
    return 0;
  }
  // Name and labels only when a job on the page has them; labels last, where a long cell does not push others.
  const named = page.jobs.some((j) => j.name !== null);
  const labelled = page.jobs.some((j) => Object.keys(j.labels).length > 0);
  const rows = page.jobs.map((j) => [
    j.jobId,
    ...(named ? [j.name ?? ''] : []),
    j.jobType,
    j.status,
    `${j.stage}/${j.totalStages}`,
    formatTime(j.createdAt),
    formatDuration(j.createdAt, j.finishedAt),
    ...(labelled ? [formatLabels(j.labels)] : []),
  ]);
  io.out(`${table(['JOB ID', ...(named ? ['NAME'] : []), 'TYPE', 'STATUS', 'STAGE', 'CREATED', 'DURATION', ...(labelled ? ['LABELS'] : [])], rows)}\n`);
  if (page.nextCursor) io.out(`more: add --cursor ${page.nextCursor}\n`);
  return 0;
}

async function tasks(args: readonly string[], io: CliIo): Promise<number> {
  const opts = { stage: { type: 'string' }, status: { type: 'string' }, limit: { type: 'string' } } as const;
  const { values, positionals, clientFor } = parse(args, opts, ['jobId']);
  const jobId = positionals[0] ?? '';
  const limit = str(values, 'limit');
  const { tasks: list } = await clientFor(io).tasks(jobId, { stage: str(values, 'stage'), status: str(values, 'status'), limit });
  if (list.length === 0) {
    io.out('no tasks\n');
    return 0;
  }
  // Tasks of a type with a global concurrency limit name the slot key they count against.
  const limited = list.some((t) => t.limitKey);
  // Leases lost to hosts that died are not attempts: shown apart, when any task has lost one.
  const lost = list.some((t) => t.leaseLosses > 0);
  const rows = list.map((t) => [
    String(t.stage),
    String(t.taskIndex),
    t.status,
    String(t.attempt),
    ...(lost ? [String(t.leaseLosses)] : []),
    formatTime(t.startedAt),
    formatDuration(t.startedAt, t.finishedAt),
    ...(limited ? [t.limitKey ?? ''] : []),
    errorCell(t.error),
  ]);
  io.out(
    `${table(['STAGE', 'INDEX', 'STATUS', 'ATTEMPT', ...(lost ? ['LEASES LOST'] : []), 'STARTED', 'DURATION', ...(limited ? ['SLOT KEY'] : []), 'ERROR'], rows)}\n`,
  );
  if (list.length === Number(limit ?? 1000)) io.out(`(first ${list.length} tasks; use --stage, --status or --limit to see others)\n`);
  return 0;
}

async function events(args: readonly string[], io: CliIo): Promise<number> {
  const { positionals, clientFor } = parse(args, {}, ['jobId']);
  const client = clientFor(io);
  const jobId = positionals[0] ?? '';
  // The API pages by event id; read them all, oldest first, as the trail is meant to be read.
  const all: EventJson[] = [];
  for (let afterId = 0; ;) {
    const { events: page } = await client.events(jobId, afterId, 1000);
    all.push(...page);
    const last = page[page.length - 1];
    if (!last || page.length < 1000) break;
    afterId = last.id;
  }
  const rows = all.map((e) => [
    String(e.id),
    formatTime(e.at),
    e.entity,
    e.stage === null ? '' : String(e.stage),
    // A signal's event names the signal, a re-run's how many tasks it chose, a task's the task.
    e.signal ?? (e.rerun ? `${e.rerun.selected} task(s) re-run` : shortTaskId(jobId, e.taskId)),
    `${e.from ?? '∅'} → ${e.to}`,
    e.attempt === null ? '' : String(e.attempt),
    errorCell(e.error),
  ]);
  io.out(`${table(['ID', 'AT', 'ENTITY', 'STAGE', 'TASK', 'TRANSITION', 'ATTEMPT', 'ERROR'], rows)}\n`);
  return 0;
}

async function control(action: ControlAction, args: readonly string[], io: CliIo): Promise<number> {
  const { positionals, clientFor } = parse(args, {}, ['jobId']);
  const job = await clientFor(io).control(positionals[0] ?? '', action);
  io.out(`${action}: ${job.jobType} job ${job.jobId} is now ${job.status}\n`);
  return 0;
}

async function deleteJob(args: readonly string[], io: CliIo): Promise<number> {
  const { positionals, clientFor } = parse(args, {}, ['jobId']);
  const { jobId, deleted } = await clientFor(io).deleteJob(positionals[0] ?? '');
  io.out(
    `deleted job ${jobId}: ${deleted.stages} stage(s), ${deleted.tasks} task(s), ${deleted.events} event(s), ${deleted.deadLetters} dead letter(s), ${deleted.outbox} outbox row(s), ${deleted.taskLogs} log line(s)${deleted.blobsDeleted ? `, ${deleted.blobsDeleted} payload blob(s)` : ''}\n`,
  );
  // The job is gone either way; blobs a failed delete left are the orphan sweep's, and the operator is told why.
  if (deleted.blobsLeft) {
    io.err(
      `warning: ${deleted.blobsLeft} payload blob(s) of the job could not be deleted (${oneLine(`${deleted.blobError?.type ?? 'Error'}: ${deleted.blobError?.message ?? 'unknown'}`)}); the janitor's orphan sweep deletes them later\n`,
    );
  }
  return 0;
}
