import { TASK_LOG_LIMITS } from '../../models/task-log';
import type { ApiClient, TaskJson, TaskLogPageJson } from './api-client';
import { formatTime, shortTaskId } from './format';
import { UsageError, type CliIo } from './io';
import type { parse as parseFn } from './remote';
import { oneLine } from './visible';

type Parse = typeof parseFn;

/** Pages as large as the API gives: a job's lines are few (TASK_LOG_LIMITS.linesPerJob) and read whole. */
const LOG_PAGE = 1000;
const TASK_PAGE = 5000;

/**
 * `coremachine logs <jobId> [--task T] [--stage N] [--json]`: the lines the job's handlers logged
 * (ctx.log), task by task in stage and index order, each task's in the order written. `--task`
 * takes a task id or its short form `s2-t7`. Only tasks the listing says logged are read.
 */
export async function showLogs(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { values, positionals, clientFor } = parse(args, { task: { type: 'string' }, stage: { type: 'string' }, json: { type: 'boolean' } }, ['jobId']);
  const jobId = positionals[0] ?? '';
  const task = typeof values.task === 'string' ? values.task : undefined;
  const stage = typeof values.stage === 'string' ? values.stage : undefined;
  if (task !== undefined && stage !== undefined) throw new UsageError('give --task or --stage, not both');
  const client = clientFor(io);
  // A short task id is the suffix the tables print; the server checks the whole id.
  const taskIds = task !== undefined ? [/^s\d+-t\d+$/.test(task) ? `${jobId}-${task}` : task] : await loggingTasks(client, jobId, stage);
  const pages: TaskLogPageJson[] = [];
  for (const taskId of taskIds) pages.push(await wholeLog(client, jobId, taskId));
  if (values.json === true) {
    io.out(`${JSON.stringify(pages, null, 2)}\n`);
    return 0;
  }
  const lines = pages.flatMap((page) => page.lines.map((line) => formatLine(jobId, page.taskId, line)));
  io.out(lines.length > 0 ? `${lines.join('\n')}\n` : 'no log lines\n');
  for (const page of pages) {
    if (page.dropped > 0) {
      io.out(
        `(${oneLine(shortTaskId(jobId, page.taskId))}: ${page.dropped} older line(s) dropped over the cap of ${TASK_LOG_LIMITS.linesPerAttempt} per attempt)\n`,
      );
    }
  }
  const jobDropped = pages[0]?.jobDropped ?? 0;
  if (jobDropped > 0) io.out(`(the job dropped its ${jobDropped} oldest line(s) over its cap of ${TASK_LOG_LIMITS.linesPerJob})\n`);
  return 0;
}

/** The tasks of the job (of one stage, or all) that logged, in stage and index order. */
async function loggingTasks(client: ApiClient, jobId: string, stage: string | undefined): Promise<string[]> {
  const stages = stage !== undefined ? [stage] : Array.from({ length: (await client.job(jobId)).totalStages }, (_, i) => String(i + 1));
  const ids: string[] = [];
  for (const s of stages) {
    for (let afterIndex = -1; ;) {
      const { tasks } = await client.tasks(jobId, { stage: s, limit: TASK_PAGE, afterIndex });
      ids.push(...tasks.filter((t: TaskJson) => t.logs !== undefined).map((t) => t.taskId));
      const last = tasks.at(-1);
      if (!last || tasks.length < TASK_PAGE) break;
      afterIndex = last.taskIndex;
    }
  }
  return ids;
}

/** Every page of one task's lines, as one page. */
async function wholeLog(client: ApiClient, jobId: string, taskId: string): Promise<TaskLogPageJson> {
  const first = await client.taskLogs(jobId, taskId, 0, LOG_PAGE);
  const lines = [...first.lines];
  for (let next = first.nextAfterSeq; next !== null;) {
    const page = await client.taskLogs(jobId, taskId, next, LOG_PAGE);
    lines.push(...page.lines);
    next = page.nextAfterSeq;
  }
  return { ...first, lines, nextAfterSeq: null };
}

/** One line: task, time, level, attempt, message and fields, each folded to one line (text from the handler is untrusted). */
function formatLine(jobId: string, taskId: string, line: TaskLogPageJson['lines'][number]): string {
  const fields = line.fields === null || line.fields === undefined ? '' : `  ${oneLine(JSON.stringify(line.fields))}`;
  return `${oneLine(shortTaskId(jobId, taskId))}  ${formatTime(line.loggedAt)}  ${oneLine(String(line.level).toUpperCase()).padEnd(5)}  a${line.attempt}  ${oneLine(line.message)}${fields}`;
}
