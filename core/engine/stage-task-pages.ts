import type { Queryable } from '../db/pool';
import { queuedTaskPage } from '../state/tasks-store';
import type { StageTaskPage } from '../transport/transport';

/** The stage a `stage_tasks` intent dispatches, and the resend tag that makes its messages new. */
export interface StageDispatch {
  jobId: string;
  stage: number;
  resend?: string;
  /** One chunk of the stage (its tasks were committed together); absent = the whole stage. */
  chunk?: { from: number; through: number };
}

/** One page of the stage's QUEUED queue-executed tasks after `afterIndex`, as task messages. */
export async function readStageTaskPage(db: Queryable, dispatch: StageDispatch, afterIndex: number, limit: number): Promise<StageTaskPage> {
  const page = await queuedTaskPage(db, dispatch.jobId, dispatch.stage, afterIndex, limit, dispatch.chunk?.through);
  return {
    messages: page.map((task) => ({
      taskId: task.task_id,
      jobId: dispatch.jobId,
      stage: dispatch.stage,
      taskType: task.task_type,
      attempt: task.attempt + 1,
      ...(dispatch.resend ? { resend: dispatch.resend } : {}),
    })),
    lastIndex: page[page.length - 1]?.task_index ?? afterIndex,
  };
}
