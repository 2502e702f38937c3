import type { OperationCountsSnapshot } from '../core/transport/operation-counts';
import type { StatementStat } from './sql-counter';

/** What the orchestrator asks one child process to run, and what the child reports back. */
/** coremachine-fair: CoreMachine with every job under one fairness key, the scheme's cost when it does not bind (core/engine/fair-share.ts). */
export type SystemName = 'coremachine' | 'coremachine-fair' | 'graphile-worker' | 'pg-boss' | 'ceiling' | 'coremachine-scale';

/** graphile-worker 0.17 knobs swept by --peer-sweep (-1 = off, graphile-worker's own default). */
export interface GraphileSettings {
  concurrency: number;
  localQueueSize: number;
  completeJobBatchDelayMs: number;
}

/** pg-boss 10 knobs: `work()` registrations (v10 dropped teamSize/teamConcurrency) and their batchSize. */
export interface PgBossSettings {
  workers: number;
  batchSize: number;
}

/** K engines on one shared in-process transport (--instances). */
export interface ScaleSpec {
  instances: number;
  poolPerInstance: number;
  viaPgBouncer: boolean;
  /** Where the engines' pools connect: the database itself, or PgBouncer in front of it. */
  connectUrl: string;
  /** Terminate one engine backend every this many ms (0 = never). */
  killEveryMs: number;
  /** PgBouncer's admin console, to close its server connections to the bench database after the run. */
  pgBouncerConsoleUrl?: string;
}

/** What a scale run measured besides throughput. */
export interface ScaleMeasures {
  instances: number;
  poolPerInstance: number;
  viaPgBouncer: boolean;
  peakServerConnections: number;
  lockWaitShare: number;
  /** Top lock waits: lock type, relation and the waiting statement, by share of lock-wait samples. */
  lockWaits: Array<{ what: string; share: number }>;
  transientErrors: number;
  /** Messages given back to the queue (abandoned) by any instance. */
  redeliveries: number;
  deadLetters: number;
  failedTasks: number;
  /** Backends terminated by --kill-every-ms. */
  connectionsKilled: number;
  jobStatus: string;
}

/** --result-bytes: the size of each task's result, and where results larger than the threshold go. */
export interface PayloadSpec {
  resultBytes: number;
  store: 'none' | 'azurite';
  /** The Azurite the orchestrator started, and a container of this run's own. */
  connectionString?: string;
  container?: string;
  inlineMaxBytes: number;
}

/** What a payload run stored where, per task. */
export interface PayloadMeasures {
  resultBytes: number;
  store: 'none' | 'azurite';
  /** Growth of every coremachine table (heap, TOAST, indexes) over the run, per task. */
  pgBytesPerTask: number;
  /** Bytes of the results in the payload store, per task (by their references). */
  blobBytesPerTask: number;
  /** Share of the tasks whose result is in the store. */
  storedShare: number;
}

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
  /** CoreMachine: the transport's maxPackedTasks (unset: its default). */
  maxPackedTasks?: number;
  graphile: GraphileSettings;
  pgBoss: PgBossSettings;
  scale?: ScaleSpec;
  payload?: PayloadSpec;
  timeoutMs: number;
  /** The ceiling loop stops after this long even if 3N updates are not done. */
  ceilingMaxMs: number;
  pollMs: number;
}

export interface RunResult {
  system: SystemName;
  n: number;
  /** Stages per job (--stages). */
  stages: number;
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
  /**
   * The heap still referenced once the run is over, measured after a full collection, before the
   * system stops: what the system keeps, as against peak RSS, which also holds the garbage V8 lets
   * accumulate between collections (it lets the heap grow the longer a busy run lasts).
   */
  liveHeapMb: number | null;
  nodeCpuMs: number;
  postgresCpuMs: number | null;
  otherActiveSessions: number;
  autoAnalyzedAfterMs: number | null;
  taskHotUpdateShare: number | null;
  notes: string[];
  /** CoreMachine: the transport's Service Bus operations by kind and Functions executions over the run (core/transport/operation-counts.ts). */
  serviceBus?: OperationCountsSnapshot;
  scale?: ScaleMeasures;
  payload?: PayloadMeasures;
  /** The peer's settings for this run (graphile-worker, pg-boss). */
  settings?: Record<string, number>;
}

export type ChildMessage = { kind: 'result'; result: RunResult } | { kind: 'error'; message: string; stack?: string };
