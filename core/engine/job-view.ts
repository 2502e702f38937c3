import { ENDED_JOB_STATUSES, isSignalStage, type AnyJobDefinition, type JobView, type StageProgress } from '../../models';
import { toJobRecord, toStageProgress, type JobRow, type StageRow } from '../state/rows';

/**
 * The job as readers see it: every declared stage, in order. A stage has a row only once it
 * started; the ones that have not are shown PENDING with zero counters, named from the job
 * definition, so a client sees `reply` for stage 2 before it runs, not a nameless gap. A job type
 * this process does not know (removed since) keeps its started stages and numbers the rest.
 */
export function buildJobView(job: JobRow, stageRows: readonly StageRow[], definition: AnyJobDefinition | undefined, waitingFor?: string): JobView {
  const started = new Map(stageRows.map((row) => [row.stage, toStageProgress(row)]));
  const declared = Math.max(job.total_stages, ...stageRows.map((row) => row.stage));
  const stages: StageProgress[] = [];
  for (let stage = 1; stage <= declared; stage++) {
    const declaredStage = definition?.stages[stage - 1];
    stages.push(
      started.get(stage) ?? {
        stage,
        name: declaredStage?.name ?? `stage ${stage}`,
        status: 'PENDING',
        total: 0,
        completed: 0,
        failed: 0,
        startedAt: null,
        finishedAt: null,
        ...(isSignalStage(declaredStage) ? { signal: declaredStage.signal.name } : {}),
      },
    );
  }
  // An ended job waits for nothing, whatever is deployed now.
  const ended = ENDED_JOB_STATUSES.includes(job.status);
  return { ...toJobRecord(job), stages, ...(waitingFor && !ended ? { waitingFor } : {}) };
}
