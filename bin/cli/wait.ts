import type { ApiClient } from './api-client';
import { ENDED_JOB_STATUSES } from '../../models/status-values';
import type { CliIo } from './io';
import { printOutcome } from './watch';

/** Below proxies' and load balancers' idle timeouts, and well within the API's limit of 60. */
const WAIT_SECONDS = 25;

/**
 * `submit --wait`: long-polls the job (the server answers when it ends, or after 25 s) until it has
 * ended; no progress bars, one line of outcome. Exit 0 only when it COMPLETED.
 */
export async function waitForJob(client: ApiClient, jobId: string, io: CliIo, waitSeconds = WAIT_SECONDS): Promise<number> {
  for (;;) {
    const job = await client.job(jobId, waitSeconds);
    if (ENDED_JOB_STATUSES.includes(job.status)) {
      printOutcome(job, io);
      return job.status === 'COMPLETED' ? 0 : 1;
    }
  }
}
