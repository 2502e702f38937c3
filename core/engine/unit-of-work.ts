import type pg from 'pg';
import { withTransaction, type TransactionOptions } from '../db/pool';
import { emitEvent, recordStageDuration } from '../telemetry';
import { afterCommit, jobEventIntents, withJobIdentity, type AfterCommit, type EngineContext, type RunningTaskAbort, type Transition } from './after-commit';
import type { Outbox } from './outbox';
import type { StageCheck } from './stage-check';

/** What a piece of work sees inside its transaction. */
export interface WorkScope {
  client: pg.PoolClient;
  context: EngineContext;
}

/** What a piece of work hands back: its value, and what is to be done once it commits. */
export type WorkResult<T> = { value: T } & Partial<AfterCommit>;

/** A committed unit of work: its value, the stage checks it calls for, and what failed after the commit. */
export interface Committed<T> {
  value: T;
  stageChecks: readonly StageCheck[];
  /** A dispatch that failed after the commit: its outbox rows stay for the janitor's sweep. */
  dispatchFailure?: unknown;
}

/**
 * The plumbing of every state change: open a transaction, run the work, write its message intents
 * (and the job events of its transitions) to the outbox in that same transaction, commit, then
 * report the transitions, abort the handlers it stopped and dispatch the messages. It returns the
 * stage checks the work called for as data; the engine runs them (core/engine/commit.ts, the only
 * caller). A crash after commit loses nothing: the outbox rows stay for the janitor's sweep, and a
 * stage check not yet run is found by its stall sweep. A work that declares `singleStatement`
 * (a settle with no retry and no log lines) records no intents, so its one statement is the
 * transaction (core/db/pool.ts).
 */
export class UnitOfWork {
  constructor(
    readonly pool: pg.Pool,
    private readonly outbox: Outbox,
    /** What the work sees (also read by steps that commit in several units, such as stage creation). */
    readonly context: EngineContext,
    /** Aborts handlers running in this process (their job stopped). */
    private readonly abortRunning: (tasks: readonly RunningTaskAbort[]) => void = () => undefined,
  ) {}

  async run<T>(work: (scope: WorkScope) => Promise<WorkResult<T>>, options: TransactionOptions = {}): Promise<Committed<T>> {
    const { value, after, recorded } = await withTransaction(
      this.pool,
      async (client) => {
        // Each attempt's result is its own: a transaction retried after a transient fault reports once.
        const result = await work({ client, context: this.context });
        const after = afterCommit(result);
        const events = await withJobIdentity(client, jobEventIntents(after.transitions, new Date()));
        const intents = [...after.intents, ...events];
        return { value: result.value, after, recorded: await this.outbox.record(client, intents) };
      },
      options,
    );
    reportTransitions(after.transitions);
    if (after.aborts.length > 0) this.abortRunning(after.aborts);
    try {
      await this.outbox.dispatch(recorded);
    } catch (dispatchFailure) {
      return { value, stageChecks: after.stageChecks, dispatchFailure };
    }
    return { value, stageChecks: after.stageChecks };
  }
}

/** Telemetry for committed transitions: one custom event each, and the stage-duration metric. */
export function reportTransitions(transitions: readonly Transition[]): void {
  for (const transition of transitions) {
    emitEvent(`CoreMachine.${transition.name}`, transition.attributes);
    if (transition.stageDurationMs !== undefined) {
      recordStageDuration(transition.stageDurationMs, { jobType: String(transition.attributes.jobType), stage: Number(transition.attributes.stage) });
    }
  }
}
