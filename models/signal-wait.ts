import { ACTIVE_JOB_STATUSES, type JOB_STATUSES } from './status-values';

/** The parts of a job view (or its JSON) that say whether it waits for a signal. */
interface JobLike {
  status: (typeof JOB_STATUSES)[number];
  stage: number;
  stages: ReadonlyArray<{ stage: number; status: string; completed: number; signal?: string | undefined }>;
}

/**
 * The signal the job waits for right now, or undefined: its current stage started, waits for a
 * signal and has not received it, and the job has not stopped (a PAUSED job still waits).
 * Zod-free, so the dashboard's bundle and the CLI read the same rule the engine enforces.
 */
export function awaitedSignal(job: JobLike): { name: string; stage: number } | undefined {
  if (!ACTIVE_JOB_STATUSES.includes(job.status)) return undefined;
  const current = job.stages.find((stage) => stage.stage === job.stage);
  if (!current?.signal || current.status !== 'PROCESSING' || current.completed > 0) return undefined;
  return { name: current.signal, stage: current.stage };
}
