import type { StageResults } from '../../models';
import type { Queryable } from '../db/pool';
import type { StageRow } from '../state/rows';
import { findSignalOfStage } from '../state/signals-store';
import { readStageResultsPage } from '../state/tasks-store';

/** A finished stage's results: its tasks' results in task order, or the payload of the signal it waited for. */
export function stageResultsOf<R>(db: Queryable, stage: Pick<StageRow, 'job_id' | 'stage' | 'completed' | 'signal'>): StageResults<R> {
  if (stage.signal) return new SignalStageResults<R>(db, stage.job_id, stage.stage);
  return new PagedStageResults<R>(db, stage.job_id, stage.stage, stage.completed);
}

const PAGE_SIZE = 1000;

/** The previous stage's results, read page by page in task order. */
export class PagedStageResults<R> implements StageResults<R> {
  constructor(
    private readonly db: Queryable,
    private readonly jobId: string,
    private readonly stage: number,
    readonly count: number,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<R> {
    let afterIndex = -1;
    for (;;) {
      const page = await readStageResultsPage(this.db, this.jobId, this.stage, afterIndex, PAGE_SIZE);
      for (const row of page) yield row.result as R;
      const last = page[page.length - 1];
      if (!last || page.length < PAGE_SIZE) return;
      afterIndex = last.task_index;
    }
  }

  async all(): Promise<R[]> {
    const results: R[] = [];
    for await (const result of this) results.push(result);
    return results;
  }
}

/** The first stage has no previous stage. */
export const NO_RESULTS: StageResults<never> = {
  count: 0,
  [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve({ done: true, value: undefined }) }),
  all: () => Promise.resolve([]),
};

/** A waiting stage's one result: the validated payload of the signal it received. */
class SignalStageResults<R> implements StageResults<R> {
  readonly count = 1;

  constructor(
    private readonly db: Queryable,
    private readonly jobId: string,
    private readonly stage: number,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<R> {
    yield* await this.all();
  }

  async all(): Promise<R[]> {
    const signal = await findSignalOfStage(this.db, this.jobId, this.stage);
    if (!signal) throw new Error(`stage ${this.stage} of job ${this.jobId} finished waiting but no signal is stored for it`);
    return [signal.payload as R];
  }
}
