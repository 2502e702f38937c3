import type { ErrorShape } from '../../models';
import type { Queryable } from '../db/pool';
import { findJob } from '../state/jobs-store';
import { findStage } from '../state/stages-store';
import type { Queryable as Reader } from '../db/pool';
import { firstTaskError } from '../state/tasks-store';
import { NOTHING_AFTER_COMMIT, type AfterCommit, type EngineContext } from './after-commit';
import { advanceStage, failJob } from './stage-advance';

/**
 * A stage whose counters a committed transaction moved to its total, or past its failure
 * tolerance. Result commits do not lock the job row (many instances would queue on it, one
 * commit at a time): they record the check, and it runs right after their commit, in its own
 * unit of work that takes the job row lock. Lost with a crashed process, the janitor's stall
 * sweep runs the same check.
 */
export interface StageCheck {
  jobId: string;
  stage: number;
  /** The error that tipped the stage over its tolerance, as its committer saw it. */
  firstError?: ErrorShape;
  /**
   * The committer's own view did not call for a check, but a commit it could not see may have
   * finished the stage: after commit, read the counts again (no lock) and check only if they call
   * for it. The last of any set of concurrent commits sees them all, so none is missed.
   */
  probe?: true;
}

/**
 * Under the job row lock, re-reads the stage and does what its committed counters call for:
 * fail the job (past the tolerance) or advance it (all counted). Idempotent: a job that moved
 * on, or a stage already finished, is left alone, so exactly one of any number of concurrent
 * checks (or janitor sweeps) acts.
 */
export async function checkStage(db: Queryable, context: EngineContext, check: StageCheck): Promise<AfterCommit> {
  const job = await findJob(db, check.jobId, true);
  if (!job || job.status !== 'PROCESSING' || job.stage !== check.stage) return NOTHING_AFTER_COMMIT;
  const stage = await findStage(db, check.jobId, check.stage);
  if (!stage || stage.status !== 'PROCESSING') return NOTHING_AFTER_COMMIT;
  if (stage.failed > stage.max_failures) {
    const error = check.firstError ?? (await firstTaskError(db, check.jobId, check.stage))?.error ?? undefined;
    return (
      await failJob(
        db,
        context,
        check.jobId,
        check.stage,
        error ?? { type: 'TasksFailedError', message: `${stage.failed} task(s) failed; the stage tolerates ${stage.max_failures}`, stage: check.stage },
      )
    ).after;
  }
  if (!stage.creating && stage.completed + stage.failed >= stage.total) return advanceStage(db, context, stage);
  return NOTHING_AFTER_COMMIT;
}

/** Whether a stage row as a commit left it needs a check: counted to its total, or past its tolerance. */
export function stageNeedsCheck(
  stage: { completed: number; failed: number; total: number; max_failures: number; creating: boolean },
  hadFailure: boolean,
): boolean {
  return (hadFailure && stage.failed > stage.max_failures) || (!stage.creating && stage.completed + stage.failed >= stage.total);
}

/** A probe's read after commit: do the committed counts call for a check? Takes no lock. */
export async function probeCallsForCheck(db: Reader, check: StageCheck): Promise<boolean> {
  const stage = await findStage(db, check.jobId, check.stage);
  return stage !== null && stage.status === 'PROCESSING' && stageNeedsCheck(stage, true);
}
