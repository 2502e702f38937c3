import type { ErrorShape } from './error-shape';
import type { RerunEventDetail } from './rerun';

/**
 * One row of a job's audit trail, as GET /api/jobs/{jobId}/events answers it (the CLI and the
 * dashboard read it as JSON). The rows are written by triggers in migration 002; the engine's
 * events store reads them into this shape.
 */
export interface EventRecord {
  id: number;
  jobId: string;
  /**
   * 'signal': a signal was delivered to a waiting stage (migration 013); `signal` names it.
   * 'rerun': an operator re-ran chosen tasks of `stage` (migration 024); `rerun` says which and what is recomputed.
   */
  entity: 'job' | 'stage' | 'task' | 'signal' | 'rerun';
  stage: number | null;
  taskId: string | null;
  from: string | null;
  to: string;
  attempt: number | null;
  error: ErrorShape | null;
  at: Date;
  /** Only on 'signal' events: the signal's name. */
  signal?: string;
  /** Only on 'rerun' events: what was chosen and what is recomputed. */
  rerun?: RerunEventDetail;
}
