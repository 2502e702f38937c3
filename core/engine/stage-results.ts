import type { StageResults } from '../../models';
import type { Queryable } from '../db/pool';
import { readStageResultsPage } from '../state/tasks-store';

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
