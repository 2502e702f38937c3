import type pg from 'pg';
import { withTransaction, type TransactionOptions } from '../db/pool';
import { retryTransient } from '../db/retry-transient';
import type { Logger } from '../logger';
import type { Registry } from '../registry';
import { emitEvent, recordStageDuration } from '../telemetry';
import { jobEventIntents } from './job-events';
import type { Outbox, OutboxIntent } from './outbox';
import type { AdvanceDeps, RunningTaskAbort, TransitionEvent } from './stage-advance';
import { checkStage, probeCallsForCheck, type StageCheck } from './stage-check';

/** What a piece of work sees inside its transaction. */
export interface WorkScope {
  client: pg.PoolClient;
  /**
   * Engine dependencies with this transaction's own event list (reported only if it commits) and
   * its stage checks (run only after it commits, each in its own unit of work).
   */
  deps: AdvanceDeps & { events: TransitionEvent[]; stageChecks: StageCheck[]; abortAfterCommit: RunningTaskAbort[] };
}

/** What a piece of work hands back: its value and the messages its state change needs. */
export interface WorkResult<T> {
  value: T;
  intents?: readonly OutboxIntent[];
}

/**
 * The one way the engine changes state: open a transaction, run the work, write its message
 * intents to the outbox in that same transaction, commit, then report the transition events and
 * dispatch the messages. Every path (task results, stage starts, control actions, remote workers,
 * the janitor, dead letters) goes through here, so none can forget to report or to dispatch.
 * A crash after commit loses nothing: the outbox rows stay for the janitor's sweep, and a stage
 * check not yet run is found by its stall sweep (a stage counted full while its job waits).
 */
export class UnitOfWork {
  constructor(
    private readonly pool: pg.Pool,
    private readonly outbox: Outbox,
    private readonly base: {
      registry: Registry;
      logger: Logger;
      /** Aborts handlers running in this process (a failed job cancelled their tasks). */
      abortRunning?: (tasks: readonly RunningTaskAbort[]) => void;
    },
  ) {}

  async run<T>(work: (scope: WorkScope) => Promise<WorkResult<T>>, options: TransactionOptions = {}): Promise<T> {
    let events: TransitionEvent[] = [];
    let stageChecks: StageCheck[] = [];
    let abortAfterCommit: RunningTaskAbort[] = [];
    const { value, recorded } = await withTransaction(
      this.pool,
      async (client) => {
        // Fresh per attempt: a transaction retried after a transient fault reports its events once.
        events = [];
        stageChecks = [];
        abortAfterCommit = [];
        const result = await work({ client, deps: { registry: this.base.registry, logger: this.base.logger, events, stageChecks, abortAfterCommit } });
        const intents = [...(result.intents ?? []), ...jobEventIntents(events, new Date())];
        return { value: result.value, recorded: await this.outbox.record(client, intents) };
      },
      options,
    );
    reportTransitions(events);
    if (abortAfterCommit.length > 0) this.base.abortRunning?.(abortAfterCommit);
    // The stage checks do not wait on this transaction's sends, nor are they skipped when a send
    // fails (its outbox row is swept later): a lost check would hold the job until a stall sweep.
    // Both run; what failed is thrown after both, together if both did.
    const failures: unknown[] = [];
    await this.runStageChecks(stageChecks).catch((error: unknown) => failures.push(error));
    await this.outbox.dispatch(recorded).catch((error: unknown) => failures.push(error));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, 'stage checks and message dispatch after a commit both failed');
    return value;
  }

  /** Each check in its own unit of work; a probe first reads, without a lock, whether it is needed. */
  private async runStageChecks(checks: readonly StageCheck[]): Promise<void> {
    for (const check of checks) {
      if (check.probe && !(await retryTransient(() => probeCallsForCheck(this.pool, check)))) continue;
      await this.run(async ({ client, deps }) => ({ value: undefined, intents: await checkStage(client, deps, check) }));
    }
  }
}

/** Telemetry for committed transitions: one custom event each, and the stage-duration metric. */
export function reportTransitions(events: readonly TransitionEvent[]): void {
  for (const event of events) {
    emitEvent(`CoreMachine.${event.name}`, event.attributes);
    if (event.stageDurationMs !== undefined) {
      recordStageDuration(event.stageDurationMs, { jobType: String(event.attributes.jobType), stage: Number(event.attributes.stage) });
    }
  }
}
