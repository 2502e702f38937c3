import type { StatementStat } from './sql-counter';

/** What the orchestrator asks one child process to run, and what the child reports back. */
export type SystemName = 'coremachine' | 'graphile-worker' | 'ceiling';

export interface RunSpec {
  system: SystemName;
  n: number;
  stages: number;
  run: number;
  databaseUrl: string;
  databaseName: string;
  adminUrl: string;
  /** CoreMachine task batches in flight; graphile-worker concurrency; ceiling clients. */
  workers: number;
  poolSize: number;
  batchSize: number;
  jobConcurrency: number;
  fanInFromResults: boolean;
  /** graphile-worker localQueue size (-1 = off, its default). */
  graphileLocalQueue: number;
  timeoutMs: number;
  /** The ceiling loop stops after this long even if 3N updates are not done. */
  ceilingMaxMs: number;
  pollMs: number;
}

export interface RunResult {
  system: SystemName;
  n: number;
  run: number;
  /** Tasks (3N) or counter updates (3N). */
  operations: number;
  elapsedMs: number;
  operationsPerSecond: number;
  /** Duration of each stage's creation (CoreMachine: processJobMessage). */
  stageCreateMs: number[];
  /** Of which: sending the stage's N task messages to the transport. */
  stageDispatchMs: number[];
  /** Per hand-over: last task of stage n finished → first task of stage n + 1 started. */
  handoverMs: number[];
  /** Hand-over split: last completion → next job message starts its transaction. */
  handoverAdvanceMs: number[];
  /** Hand-over split: job message transaction start → first task claimed. */
  handoverStartMs: number[];
  statements: number;
  transactions: number;
  /** pg_stat_database xact_commit delta, less the completion poller's own transactions. */
  serverTransactions: number | null;
  byStatement: StatementStat[];
  walBytes: number | null;
  walSyncs: number | null;
  peakRssMb: number;
  startRssMb: number;
  nodeCpuMs: number;
  postgresCpuMs: number | null;
  otherActiveSessions: number;
  autoAnalyzedAfterMs: number | null;
  notes: string[];
}

export type ChildMessage = { kind: 'result'; result: RunResult } | { kind: 'error'; message: string; stack?: string };
