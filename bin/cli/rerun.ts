import type { RerunOutcome } from '../../models/rerun';
import type { Wire } from './api-client';
import { shortTaskId } from './format';
import { UsageError, type CliIo } from './io';
import type { parse as parseFn } from './remote';
import { oneLine } from './visible';

type Parse = typeof parseFn;
type RerunJson = Wire<RerunOutcome>;

/** Task ids a dry run prints; --json has all the answer lists. */
const PRINTED_IDS = 20;

/**
 * `coremachine rerun <jobId> --stage N [--task ID]... [--status S] [--result-field path=value]
 * [--dry-run] [--json]`: runs chosen tasks of a finished stage again and recomputes what depends on
 * them (POST jobs/{jobId}/stages/{stage}/rerun). `--task` takes a task id or its short form
 * `s2-t7`; a `--result-field` value is JSON when it parses as JSON (`ok=false`, `n=3`), else text.
 * The server checks everything and answers 400/409 with why, which exits 1.
 */
export async function rerunTasks(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const options = {
    stage: { type: 'string' },
    task: { type: 'string', multiple: true },
    status: { type: 'string' },
    'result-field': { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  } as const;
  const { values, positionals, clientFor } = parse(args, options, ['jobId']);
  const jobId = positionals[0] ?? '';
  const stage = typeof values.stage === 'string' ? values.stage : undefined;
  if (stage === undefined) throw new UsageError('--stage N is required: the finished stage whose tasks run again');
  const tasks = Array.isArray(values.task) ? values.task.filter((task): task is string => typeof task === 'string') : [];
  const field = typeof values['result-field'] === 'string' ? resultField(values['result-field']) : undefined;
  const status = typeof values.status === 'string' ? values.status : undefined;
  if (tasks.length === 0 && status === undefined && field === undefined)
    throw new UsageError('choose the tasks: --task ID (repeatable), --status S or --result-field path=value');
  const body = {
    ...(tasks.length > 0 ? { taskIds: tasks.map((task) => (/^s\d+-t\d+$/.test(task) ? `${jobId}-${task}` : task)) } : {}),
    ...(status === undefined ? {} : { status }),
    ...(field ? { resultField: field } : {}),
    dryRun: values['dry-run'] === true,
  };
  const outcome = await clientFor(io).request<RerunJson>('POST', `jobs/${encodeURIComponent(jobId)}/stages/${encodeURIComponent(stage)}/rerun`, body);
  if (values.json === true) {
    io.out(`${JSON.stringify(outcome, null, 2)}\n`);
    return 0;
  }
  const recomputed = [...outcome.recomputedStages.map((n) => `stage ${n}`), 'finalize'].join(', ');
  const unfinished = outcome.unfinished > 0 ? ` and ${outcome.unfinished} unfinished (cancelled) task(s)` : '';
  if (outcome.dryRun) {
    io.out(`dry run: would re-run ${outcome.selected} task(s)${unfinished} of stage ${outcome.stage} of job ${oneLine(jobId)}; recomputes ${recomputed}\n`);
    for (const id of outcome.taskIds.slice(0, PRINTED_IDS)) io.out(`  ${oneLine(shortTaskId(jobId, id))}\n`);
    if (outcome.selected > PRINTED_IDS) io.out(`  … ${outcome.selected - PRINTED_IDS} more (--json lists up to ${outcome.taskIds.length})\n`);
  } else {
    io.out(
      `re-run ${outcome.reruns}: ${outcome.selected} task(s)${unfinished} of stage ${outcome.stage} run again; ${oneLine(outcome.job.jobType)} job ${oneLine(jobId)} is ${oneLine(outcome.job.status)}; recomputes ${recomputed}\n`,
    );
  }
  if (outcome.unexamined) io.out(`note: ${outcome.unexamined} task(s) of the stage keep their result in the payload store, which --result-field cannot read\n`);
  return 0;
}

/** `path=value`: the first `=` splits (a path has none); the value is JSON when it parses, else the text itself. */
function resultField(flag: string): { path: string; equals: unknown } {
  const cut = flag.indexOf('=');
  if (cut <= 0) throw new UsageError(`--result-field takes path=value, not ${JSON.stringify(flag)}`);
  const text = flag.slice(cut + 1);
  let equals: unknown = text;
  try {
    equals = JSON.parse(text) as unknown;
  } catch {
    // Not JSON: compared as the text it is.
  }
  return { path: flag.slice(0, cut), equals };
}
