import type { StageResults } from '../../models';
import type { Queryable } from '../db/pool';
import { INLINE_PAYLOADS, type Payloads } from '../payloads/payloads';
import type { StageRow } from '../state/rows';
import { findSignalOfStage } from '../state/signals-store';
import { readStageResultsPage } from '../state/tasks-store';

/** A finished stage's results: its tasks' results in task order, or the payload of the signal it waited for. */
export function stageResultsOf<R>(
  db: Queryable,
  stage: Pick<StageRow, 'job_id' | 'stage' | 'completed' | 'signal'>,
  payloads: Payloads = INLINE_PAYLOADS,
): StageResults<R> {
  if (stage.signal) return new SignalStageResults<R>(db, stage.job_id, stage.stage);
  return new PagedStageResults<R>(db, stage.job_id, stage.stage, stage.completed, payloads);
}

const MAX_PAGE_SIZE = 1000;
/** What one page's inline results may hold together, at the largest inline value each: the page size follows from it. */
const PAGE_BYTES = 256 * 1024 * 1024;

/**
 * Rows per page: 1000, fewer when the values a row may hold inline are large (no payload store:
 * up to the inline cap each), so one page stays within PAGE_BYTES.
 */
export function resultsPageSize(payloads: Payloads): number {
  const largestInline = payloads.store ? payloads.limits.inlineMaxBytes : payloads.limits.inlineCapBytes;
  return Math.max(16, Math.min(MAX_PAGE_SIZE, Math.floor(PAGE_BYTES / Math.max(1, largestInline))));
}

/**
 * The previous stage's results, read page by page in task order. A result in the payload store is
 * read when the iteration reaches it, a few blobs at a time (Payloads.inOrder), never all at once.
 */
export class PagedStageResults<R> implements StageResults<R> {
  constructor(
    private readonly db: Queryable,
    private readonly jobId: string,
    private readonly stage: number,
    readonly count: number,
    private readonly payloads: Payloads = INLINE_PAYLOADS,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<R> {
    const pageSize = resultsPageSize(this.payloads);
    let afterIndex = -1;
    for (;;) {
      const page = await readStageResultsPage(this.db, this.jobId, this.stage, afterIndex, pageSize);
      if (page.some((row) => row.result_ref !== null)) {
        yield* this.payloads.inOrder(
          page,
          (row) => row.result_ref,
          (row) => row.result,
          (row) => `result ${row.task_index} of stage ${this.stage} of job ${this.jobId}`,
        ) as AsyncGenerator<R>;
      } else for (const row of page) yield row.result as R;
      const last = page[page.length - 1];
      if (!last || page.length < pageSize) return;
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
