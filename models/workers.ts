import { z } from 'zod';

/**
 * Who takes work: a remote worker claims tasks of `defineRemoteTask` types over HTTP; an in-process
 * host (the local worker, a Functions instance running the tasks trigger) runs `defineTask` types
 * from the tasks queue.
 */
export const WORKER_KINDS = ['remote', 'in-process'] as const;
export const WorkerKind = z.enum(WORKER_KINDS);
export type WorkerKind = z.infer<typeof WorkerKind>;

/**
 * A worker not heard from for this long is shown stale. Hosts beat every 10 s; a remote worker is
 * heard from at each claim, heartbeat and report, so one that holds a long task and heartbeats
 * less often than this shows stale between its heartbeats.
 */
export const WORKER_STALE_AFTER_SECONDS = 60;

/** One row of GET /api/workers. */
export const WorkerView = z.object({
  workerId: z.string(),
  kind: WorkerKind,
  /** The task types it claims (remote: those of its last claim) or runs (in-process: every queue task type it registers). */
  taskTypes: z.array(z.string()),
  /** The machine or Functions instance of an in-process host; null for a remote worker. */
  host: z.string().nullable(),
  firstSeenAt: z.date(),
  /** Its last claim, to within a few seconds (remote: a claim request; in-process: a batch that claimed tasks). */
  lastClaimAt: z.date().nullable(),
  /** The last time it was heard from, to within a few seconds. */
  lastHeartbeatAt: z.date(),
  heartbeatAgeSeconds: z.number(),
  /** No word for WORKER_STALE_AFTER_SECONDS: stopped, lost, or between long heartbeats. */
  stale: z.boolean(),
  /** Its PROCESSING tasks now. */
  tasksHeld: z.number().int(),
});
export type WorkerView = z.infer<typeof WorkerView>;
