import type { OperationCountsSnapshot } from '../core/transport/operation-counts';
import type { PayloadMeasures, ScaleMeasures } from './protocol';

/** The shape each benchmarked system implements; the harness in child.ts times and counts it. */
export interface Execution {
  elapsedMs: number;
  /** Operations actually done when fewer than 3N (the time-capped ceiling). */
  operations?: number;
  stageCreateMs?: number[];
  stageDispatchMs?: number[];
  handoverMs?: number[];
  handoverAdvanceMs?: number[];
  handoverStartMs?: number[];
  /** Queries this process sent outside the counted pool (e.g. a completion poller): subtracted from server counts. */
  uncountedTransactions?: number;
  /** CoreMachine: when autovacuum analyzed the tasks table, ms after submit (null: not during the run). */
  autoAnalyzedAfterMs?: number | null;
  /** CoreMachine: share of the task-row updates that were HOT (no index entries), from pg_stat_user_tables. */
  taskHotUpdateShare?: number | null;
  notes?: string[];
  /** CoreMachine: Service Bus operations and Functions executions the transport counted between submit and the last settle. */
  serviceBus?: OperationCountsSnapshot;
  scale?: ScaleMeasures;
  payload?: PayloadMeasures;
  settings?: Record<string, number>;
}

export interface SystemRun {
  /** Schema and tables, on connections that are closed before measuring starts. */
  setup(): Promise<void>;
  /** Pools, workers, listeners: everything that exists before the clock starts. */
  start(): Promise<void>;
  /** The timed part: submit, wait until all 3N operations are durable. */
  execute(): Promise<Execution>;
  /** Closes every connection this run opened. */
  stop(): Promise<void>;
}

export function deadlineError(what: string, timeoutMs: number): Error {
  return new Error(`${what} did not finish within ${timeoutMs} ms`);
}
