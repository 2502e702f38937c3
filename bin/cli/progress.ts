import type { JobView } from '../../models';

const WIDTH = 24;

/** One line per stage: a bar with completed/failed/total, plain text so it works without a TTY. */
export function renderStages(job: JobView, stageNames: readonly string[]): string {
  const lines = [`job ${job.jobId.slice(0, 12)}… ${job.status} (stage ${job.stage}/${job.totalStages})`];
  stageNames.forEach((name, index) => {
    const progress = job.stages.find((s) => s.stage === index + 1);
    if (!progress) {
      lines.push(`  stage ${index + 1} ${name.padEnd(10)} [${'·'.repeat(WIDTH)}] pending`);
      return;
    }
    const done = progress.completed + progress.failed;
    const filled = progress.total === 0 ? WIDTH : Math.round((done / progress.total) * WIDTH);
    lines.push(
      `  stage ${index + 1} ${name.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ` +
        `${progress.completed}/${progress.total} completed, ${progress.failed} failed — ${progress.status}`,
    );
  });
  return lines.join('\n');
}
