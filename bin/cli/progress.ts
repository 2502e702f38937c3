import { guardIo, type CliIo } from './io';
import { visible } from './visible';

const WIDTH = 24;

/** What a progress display needs from a job; both JobView and its JSON form (dates as strings) fit. */
export interface JobProgress {
  jobId: string;
  status: string;
  stage: number;
  totalStages: number;
  stages: ReadonlyArray<{ stage: number; name: string; status: string; total: number; completed: number; failed: number }>;
}

/**
 * One line per stage: a bar with completed/failed/total, plain text so it works without a TTY.
 * Names of stages that have not started come from stageNames when the caller knows them (the
 * demo has the registry; over HTTP only started stages have names).
 */
export function renderStages(job: JobProgress, stageNames: readonly string[] = []): string {
  const lines = [`job ${job.jobId.slice(0, 12)}… ${job.status} (stage ${job.stage}/${job.totalStages})`];
  for (let n = 1; n <= job.totalStages; n++) {
    const progress = job.stages.find((s) => s.stage === n);
    const name = progress?.name ?? stageNames[n - 1] ?? '';
    if (!progress) {
      lines.push(`  stage ${n} ${name.padEnd(10)} [${'·'.repeat(WIDTH)}] pending`);
      continue;
    }
    const filled = barCells(progress.completed + progress.failed, progress.total, progress.status !== 'PROCESSING' && progress.status !== 'PENDING');
    lines.push(
      `  stage ${n} ${name.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ` +
        `${progress.completed}/${progress.total} completed, ${progress.failed} failed — ${progress.status}`,
    );
  }
  return lines.join('\n');
}

/**
 * Rounded down, and full only when every task is done and the stage has ended: 4896/5000 must not
 * look finished, nor a stage still creating its tasks (its count can briefly be 0/0 or n/n).
 */
export function barCells(done: number, total: number, stageEnded = true): number {
  if (!stageEnded) return total <= 0 ? 0 : Math.min(WIDTH - 1, Math.floor((done / total) * WIDTH));
  if (total <= 0 || done >= total) return WIDTH;
  return Math.min(WIDTH - 1, Math.floor((done / total) * WIDTH));
}

/**
 * What must change for a new frame to be printed where it cannot be redrawn (a pipe, a log):
 * the job's status and stage, and per stage its status and its progress in quarters. A 5,000-task
 * job then leaves a handful of lines, not one per poll.
 */
export function progressMilestone(job: JobProgress): string {
  const stages = job.stages.map((s) => `${s.stage}:${s.status}:${s.total > 0 ? Math.floor(((s.completed + s.failed) / s.total) * 4) : 4}`);
  return [job.status, job.stage, ...stages].join('|');
}

/**
 * Shows successive renderings of the same block. On a terminal the block is redrawn in place
 * (cursor up, clear to end of screen); elsewhere a block is appended only when its milestone
 * changes (see progressMilestone), so a log or a pipe gets a few readable lines instead of escape
 * codes or hundreds of frames.
 */
export class ProgressDisplay {
  private last = '';
  private lastMilestone: string | undefined;
  private linesOnScreen = 0;
  private readonly io: CliIo;

  /** The io is guarded (it already is under runCli): frames are text, the redraw is terminalControl. */
  constructor(io: CliIo) {
    this.io = guardIo(io);
  }

  show(block: string, milestone: string = block): void {
    if (block === this.last) return;
    if (!this.io.isTTY) {
      if (milestone === this.lastMilestone) return;
      this.lastMilestone = milestone;
    }
    this.last = block;
    if (this.io.isTTY && this.linesOnScreen > 0) this.io.terminalControl?.(`\x1b[${this.linesOnScreen}F\x1b[0J`);
    this.io.out(`${block}\n`);
    // A line wider than the terminal wraps onto more rows, and all of them must be cleared next time
    // (counted as printed: a control character in a stage name takes six columns once made visible).
    const columns = this.io.columns && this.io.columns > 0 ? this.io.columns : Number.POSITIVE_INFINITY;
    this.linesOnScreen = visible(block)
      .split('\n')
      .reduce((rows, line) => rows + Math.max(1, Math.ceil([...line].length / columns)), 0);
  }
}
