import type pg from 'pg';
import { ENDED_JOB_STATUSES } from '../../models';
import { JobNotFoundError } from '../errors';
import { findJobStatus } from '../state/jobs-store';

const FIRST_POLL_MS = 100;
const MAX_POLL_MS = 1000;

export interface WaitOptions {
  waitSeconds: number;
  /** Ends the wait early (the client went away, the process is stopping). */
  signal?: AbortSignal | undefined;
  sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
}

/**
 * Waits until the job has ended or the time is up. No LISTEN/NOTIFY: that needs a session held
 * for the whole wait, which PgBouncer in transaction mode cannot give. Instead one small query per
 * poll, backing off 100 ms → 1 s, each on a connection taken from the pool and given back at once,
 * so a thousand waiting clients cost no more connections than the pool already allows.
 */
export async function waitUntilEnded(pool: pg.Pool, jobId: string, options: WaitOptions): Promise<void> {
  const sleep = options.sleep ?? abortableSleep;
  const deadline = Date.now() + options.waitSeconds * 1000;
  for (let delay = FIRST_POLL_MS; ; delay = Math.min(delay * 2, MAX_POLL_MS)) {
    const status = await findJobStatus(pool, jobId);
    if (status === null) throw new JobNotFoundError(jobId);
    const left = deadline - Date.now();
    if (ENDED_JOB_STATUSES.includes(status) || left <= 0 || options.signal?.aborted) return;
    await sleep(Math.min(delay, left), options.signal);
  }
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
