import type pg from 'pg';
import { retryTransient } from '../db/retry-transient';
import { isTransientDatabaseError } from '../db/transient-errors';
import { claimTasks, type ClaimedTask, type ClaimRequest } from '../state/tasks-store';
import { GroupCommitter } from './group-commit';

/** One batch's claim: its task messages and each one's lease. */
export interface ClaimBatch {
  requests: readonly ClaimRequest[];
  leaseSeconds: readonly number[];
}

/** A batch's share of a claim: its tasks, or the error its own claim met. */
type ClaimOutcome = { tasks: ClaimedTask[] } | { error: unknown };

/**
 * The claims of the batches one process handles at the same moment, made in one statement: a
 * batch that arrives while a claim is in flight joins the next one (as results join a settle in
 * core/engine/group-commit.ts). Each claim is a commit; with small batches, one per batch was most
 * of the statements a task cost. Claims under limits and by share have their own paths.
 */
export class SharedClaims {
  private readonly group = new GroupCommitter<ClaimBatch, ClaimOutcome>((batches) => this.claimAll(batches));

  constructor(
    private readonly pool: pg.Pool,
    /** The claiming host, recorded on each task it claims (one per process). */
    private readonly workerId: string | null,
  ) {}

  async claim(batch: ClaimBatch): Promise<ClaimedTask[]> {
    if (batch.requests.length === 0) return [];
    const outcome = await this.group.add(batch);
    if ('error' in outcome) throw outcome.error;
    return outcome.tasks;
  }

  private async claimAll(batches: ClaimBatch[]): Promise<Map<ClaimBatch, ClaimOutcome>> {
    try {
      return assign(batches, await this.claimTogether(batches));
    } catch (error) {
      // A fault of the database is every batch's (each is given back); any other failure may be one
      // batch's messages, and must not send its neighbours back with it: each batch is then claimed
      // alone, and only a batch whose own claim fails gets the error.
      if (batches.length === 1 || isTransientDatabaseError(error)) throw error;
      const outcomes = new Map<ClaimBatch, ClaimOutcome>();
      for (const batch of batches) {
        try {
          outcomes.set(batch, { tasks: await this.claimTogether([batch]) });
        } catch (own) {
          outcomes.set(batch, { error: own });
        }
      }
      return outcomes;
    }
  }

  private claimTogether(batches: readonly ClaimBatch[]): Promise<ClaimedTask[]> {
    const requests = batches.flatMap((batch) => batch.requests);
    const leaseSeconds = batches.flatMap((batch) => batch.leaseSeconds);
    // Retried as a batch's own claim was: one whose answer was lost with its connection holds its
    // tasks until their leases expire, and the janitor gives them back (a lease loss, not an attempt).
    return retryTransient(() => claimTasks(this.pool, requests, leaseSeconds, this.workerId));
  }
}

/**
 * Two batches may carry the same message (a redelivery while the first copy is held): the task is
 * claimed once, by the first batch that asked for it; the other finds it a duplicate. Keyed by the
 * task id as it came (no key string built per task): a task asked for at another attempt too is rare
 * and looked up by attempt.
 */
function assign(batches: readonly ClaimBatch[], claimed: readonly ClaimedTask[]): Map<ClaimBatch, ClaimOutcome> {
  const owners = new Map<string, { attempt: number; batch: ClaimBatch; others?: Map<number, ClaimBatch> }>();
  for (const batch of batches) {
    for (const request of batch.requests) {
      const owner = owners.get(request.taskId);
      if (!owner) owners.set(request.taskId, { attempt: request.attempt, batch });
      else if (owner.attempt !== request.attempt && !owner.others?.has(request.attempt)) (owner.others ??= new Map()).set(request.attempt, batch);
    }
  }
  const byBatch = new Map<ClaimBatch, { tasks: ClaimedTask[] }>(batches.map((batch) => [batch, { tasks: [] }]));
  for (const task of claimed) {
    const owner = owners.get(task.task_id);
    const batch = owner?.attempt === task.attempt ? owner.batch : owner?.others?.get(task.attempt);
    if (!batch) throw new Error(`claimed task ${task.task_id} at attempt ${task.attempt}, which no batch asked for`);
    byBatch.get(batch)?.tasks.push(task);
  }
  return byBatch;
}
