import { ApiError, type ApiClient, type JobJson } from './api-client';
import { formatDuration } from './format';
import { ENDED_JOB_STATUSES } from '../../models/status-values';
import type { CliIo } from './io';
import { oneLine } from './visible';
import { ProgressDisplay, progressMilestone, renderStages } from './progress';

/** PAUSED is not here: a paused job is waiting for an operator, and resume continues the watch. */
/** A dev server restarting or a blip in the network should not end a long watch. */
const MAX_CONSECUTIVE_FAILURES = 5;

/** Polls the job and shows its stage bars until it ends. Exit code 0 only for COMPLETED. */
export async function watchJob(client: ApiClient, jobId: string, io: CliIo): Promise<number> {
  const display = new ProgressDisplay(io);
  const interval = io.pollIntervalMs ?? 500;
  let failures = 0;
  for (;;) {
    let job: JobJson;
    try {
      job = await client.job(jobId);
      failures = 0;
    } catch (error) {
      const transient = error instanceof ApiError && (error.status === 0 || error.status >= 500);
      if (!transient || ++failures >= MAX_CONSECUTIVE_FAILURES) throw error;
      await sleep(interval);
      continue;
    }
    display.show(renderStages(job), progressMilestone(job));
    if (ENDED_JOB_STATUSES.includes(job.status)) {
      printOutcome(job, io);
      return job.status === 'COMPLETED' ? 0 : 1;
    }
    await sleep(interval);
  }
}

/**
 * The job's end: status, the error on one line (a handler's message must not print a line of its
 * own such as "job COMPLETED"), then the error and the result as JSON, whose strings keep their
 * newlines escaped.
 */
export function printOutcome(job: JobJson, io: CliIo): void {
  io.out(`job ${oneLine(job.status)} in ${formatDuration(job.createdAt, job.finishedAt)}\n`);
  if (job.error) io.out(`error: ${oneLine(`${job.error.type}: ${job.error.message}`)}\n${JSON.stringify(job.error, null, 2)}\n`);
  if (job.result !== null && job.result !== undefined) io.out(`result: ${JSON.stringify(job.result, null, 2)}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
