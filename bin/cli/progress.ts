import type { CliIo } from './io';

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
    const done = progress.completed + progress.failed;
    const filled = progress.total === 0 ? WIDTH : Math.min(WIDTH, Math.round((done / progress.total) * WIDTH));
    lines.push(
      `  stage ${n} ${name.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ` +
        `${progress.completed}/${progress.total} completed, ${progress.failed} failed — ${progress.status}`,
    );
  }
  return lines.join('\n');
}

/**
 * Shows successive renderings of the same block. On a terminal the block is redrawn in place
 * (cursor up, clear to end of screen); elsewhere each changed block is appended, so a log or a
 * pipe gets readable history instead of escape codes.
 */
export class ProgressDisplay {
  private last = '';
  private linesOnScreen = 0;

  constructor(private readonly io: CliIo) {}

  show(block: string): void {
    if (block === this.last) return;
    this.last = block;
    if (this.io.isTTY && this.linesOnScreen > 0) this.io.out(`\x1b[${this.linesOnScreen}F\x1b[0J`);
    this.io.out(`${block}\n`);
    // A line wider than the terminal wraps onto more rows, and all of them must be cleared next time.
    const columns = this.io.columns && this.io.columns > 0 ? this.io.columns : Number.POSITIVE_INFINITY;
    this.linesOnScreen = block.split('\n').reduce((rows, line) => rows + Math.max(1, Math.ceil([...line].length / columns)), 0);
  }
}
