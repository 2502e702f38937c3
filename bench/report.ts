import { SERVICE_BUS_OPERATIONS, type ServiceBusOperation } from '../core/transport/operation-counts';
import type { GraphileSettings, PgBossSettings, RunResult, SystemName } from './protocol';
import { median, percentile, round, spread, type Spread } from './stats';

/** Medians and ranges over runs, the markdown tables, and the one-line JSON summary. */
export interface Summary {
  system: SystemName;
  n: number;
  runs: number;
  operations: Spread;
  operationsPerSecond: Spread;
  elapsedMs: Spread;
  stageCreateMs: Spread;
  stageDispatchMs: Spread;
  handoverP50Ms: Spread;
  handoverP99Ms: Spread;
  handoverAdvanceMs: Spread;
  handoverStartMs: Spread;
  statementsPerTask: Spread;
  transactionsPerTask: Spread;
  serverTransactionsPerTask: Spread;
  walBytesPerTask: Spread;
  walSyncsPerTask: Spread;
  taskHotUpdatePercent: Spread;
  nodeCpuMsPerTask: Spread;
  postgresCpuMsPerTask: Spread;
  peakRssMb: Spread;
  liveHeapMb: Spread;
  /** CoreMachine: Service Bus operations per task by kind and in total, physical messages (core/transport/operation-counts.ts). */
  serviceBusPerTask: Record<ServiceBusOperation | 'total', Spread>;
  functionsExecutionsPerTask: Spread;
  /** Bytes sent and received per task (message body, id and properties): what a Premium messaging unit's throughput is measured in. */
  serviceBusBytesPerTask: Spread;
  otherActiveSessions: number;
}

const perRun = (results: readonly RunResult[], pick: (r: RunResult) => number | null) => spread(results.map((r) => pick(r) ?? Number.NaN));

export function summarize(results: readonly RunResult[]): Summary {
  const first = results[0];
  if (!first) throw new Error('no results to summarize');
  const per = (value: number | null, r: RunResult) => (value === null ? null : value / r.operations);
  return {
    system: first.system,
    n: first.n,
    runs: results.length,
    operations: perRun(results, (r) => r.operations),
    operationsPerSecond: perRun(results, (r) => r.operationsPerSecond),
    elapsedMs: perRun(results, (r) => r.elapsedMs),
    stageCreateMs: perRun(results, (r) => median(r.stageCreateMs)),
    stageDispatchMs: perRun(results, (r) => median(r.stageDispatchMs)),
    handoverP50Ms: perRun(results, (r) => percentile(r.handoverMs, 50)),
    handoverP99Ms: perRun(results, (r) => percentile(r.handoverMs, 99)),
    handoverAdvanceMs: perRun(results, (r) => median(r.handoverAdvanceMs)),
    handoverStartMs: perRun(results, (r) => median(r.handoverStartMs)),
    statementsPerTask: perRun(results, (r) => per(r.statements, r)),
    transactionsPerTask: perRun(results, (r) => per(r.transactions, r)),
    serverTransactionsPerTask: perRun(results, (r) => per(r.serverTransactions, r)),
    walBytesPerTask: perRun(results, (r) => per(r.walBytes, r)),
    walSyncsPerTask: perRun(results, (r) => per(r.walSyncs, r)),
    taskHotUpdatePercent: perRun(results, (r) => (r.taskHotUpdateShare === null ? null : r.taskHotUpdateShare * 100)),
    nodeCpuMsPerTask: perRun(results, (r) => per(r.nodeCpuMs, r)),
    postgresCpuMsPerTask: perRun(results, (r) => per(r.postgresCpuMs, r)),
    peakRssMb: perRun(results, (r) => r.peakRssMb),
    liveHeapMb: perRun(results, (r) => r.liveHeapMb),
    serviceBusPerTask: Object.fromEntries(
      [...SERVICE_BUS_OPERATIONS, 'total' as const].map((kind) => [kind, perRun(results, (r) => (r.serviceBus ? r.serviceBus[kind] / r.operations : null))]),
    ) as Record<ServiceBusOperation | 'total', Spread>,
    functionsExecutionsPerTask: perRun(results, (r) => (r.serviceBus ? r.serviceBus.executions / r.operations : null)),
    serviceBusBytesPerTask: perRun(results, (r) => (r.serviceBus ? (r.serviceBus.sentBytes + r.serviceBus.receivedBytes) / r.operations : null)),
    otherActiveSessions: Math.max(...results.map((r) => r.otherActiveSessions)),
  };
}

function digitsFor(value: number): number {
  const magnitude = Math.abs(value);
  if (magnitude >= 100) return 0;
  if (magnitude >= 10) return 1;
  if (magnitude >= 1) return 2;
  return 3;
}

function num(value: number): string {
  if (!Number.isFinite(value)) return '–';
  return round(value, digitsFor(value)).toLocaleString('en-US', { maximumFractionDigits: digitsFor(value) });
}

export function cell(s: Spread | undefined): string {
  if (!s || !Number.isFinite(s.median)) return '–';
  if (s.min === s.max) return num(s.median);
  return `${num(s.median)} (${num(s.min)}–${num(s.max)})`;
}

const isCoreMachine = (system: SystemName) => system === 'coremachine' || system === 'coremachine-fair';

const LABELS: Record<SystemName, string> = {
  coremachine: 'CoreMachine',
  'coremachine-fair': 'CoreMachine, fair share',
  'graphile-worker': 'graphile-worker',
  'pg-boss': 'pg-boss',
  ceiling: 'ceiling (1-row UPDATE)',
  'coremachine-scale': 'CoreMachine x K instances',
};

const ROWS: Array<[string, (s: Summary) => Spread | undefined]> = [
  ['tasks/s (ceiling: updates/s)', (s) => s.operationsPerSecond],
  ['tasks done (ceiling: updates, time-capped)', (s) => s.operations],
  ['submit → COMPLETED ms (ceiling: loop ms)', (s) => s.elapsedMs],
  ['stage create ms (processJobMessage)', (s) => (isCoreMachine(s.system) ? s.stageCreateMs : undefined)],
  ['  of which N task messages sent ms', (s) => (isCoreMachine(s.system) ? s.stageDispatchMs : undefined)],
  ['hand-over p50 ms', (s) => (s.system === 'ceiling' ? undefined : s.handoverP50Ms)],
  ['hand-over p99 ms', (s) => (s.system === 'ceiling' ? undefined : s.handoverP99Ms)],
  ['  last completion → next stage txn ms', (s) => (isCoreMachine(s.system) ? s.handoverAdvanceMs : undefined)],
  ['  next stage txn → first claim ms', (s) => (isCoreMachine(s.system) ? s.handoverStartMs : undefined)],
  ['SQL statements / task', (s) => s.statementsPerTask],
  ['transactions / task (client count)', (s) => s.transactionsPerTask],
  ['transactions / task (pg_stat_database)', (s) => s.serverTransactionsPerTask],
  ['WAL bytes / task', (s) => s.walBytesPerTask],
  ['WAL syncs / task', (s) => s.walSyncsPerTask],
  ['HOT task-row updates %', (s) => (isCoreMachine(s.system) ? s.taskHotUpdatePercent : undefined)],
  ['node CPU ms / task', (s) => s.nodeCpuMsPerTask],
  ['postgres backend CPU ms / task', (s) => s.postgresCpuMsPerTask],
  ['peak RSS MB (bench process)', (s) => s.peakRssMb],
  ['live heap MB after the run (after a full GC)', (s) => s.liveHeapMb],
  ['Service Bus operations / task (physical messages)', (s) => s.serviceBusPerTask.total],
  ...SERVICE_BUS_OPERATIONS.map((kind): [string, (s: Summary) => Spread] => [`  ${kind}`, (s) => s.serviceBusPerTask[kind]]),
  ['Service Bus bytes / task (sent + received)', (s) => s.serviceBusBytesPerTask],
  ['Functions executions / task', (s) => s.functionsExecutionsPerTask],
];

export function markdownTable(n: number, summaries: readonly Summary[], runs: number): string {
  const header = `| N = ${n.toLocaleString('en-US')} (${runs} runs: median (min–max)) | ${summaries.map((s) => LABELS[s.system]).join(' | ')} |`;
  const rule = `|---|${summaries.map(() => '---:').join('|')}|`;
  const rows = ROWS.map(([label, pick]) => `| ${label} | ${summaries.map((s) => cell(pick(s))).join(' | ')} |`);
  const cm = summaries.find((s) => s.system === 'coremachine');
  // Ratio of medians, in the table itself so a copied table carries it.
  if (cm)
    rows.push(
      `| CoreMachine tasks/s ÷ this (medians) | ${summaries.map((s) => (s === cm ? '1' : num(cm.operationsPerSecond.median / s.operationsPerSecond.median))).join(' | ')} |`,
    );
  const lines = [header, rule, ...rows];
  const ratios = summaries
    .filter((s) => s.system !== 'coremachine')
    .map((s) => (cm ? `CoreMachine / ${LABELS[s.system]} = ${num(cm.operationsPerSecond.median / s.operationsPerSecond.median)}x` : ''))
    .filter(Boolean);
  if (ratios.length > 0) lines.push('', `Throughput ratio (medians): ${ratios.join('; ')}`);
  const busy = Math.max(...summaries.map((s) => s.otherActiveSessions));
  if (busy > 0) lines.push('', `WARNING: up to ${busy} other active session(s) on the server during these runs; numbers are disturbed.`);
  return lines.join('\n');
}

/** Where the time goes, for the run with the median throughput. */
export function statementProfile(results: readonly RunResult[]): string {
  const sorted = [...results].sort((a, b) => a.operationsPerSecond - b.operationsPerSecond);
  const run = sorted[Math.floor((sorted.length - 1) / 2)];
  if (!run) return '';
  const lines = [
    `Statements of ${LABELS[run.system]}, N = ${run.n.toLocaleString('en-US')}, run ${run.run} (median throughput, ${num(run.elapsedMs)} ms wall):`,
    '',
    '| statement | calls / task | avg ms (client-observed) | Σ latency / wall |',
    '|---|---:|---:|---:|',
  ];
  for (const s of run.byStatement.slice(0, 14)) {
    lines.push(
      `| \`${s.key.replace(/\|/g, '\\|')}\` | ${num(s.calls / run.operations)} | ${num(s.totalMs / s.calls)} | ${num((100 * s.totalMs) / run.elapsedMs)}% |`,
    );
  }
  return lines.join('\n');
}

export interface JsonSummary {
  n: number;
  tasksPerSecond: number;
  submitToCompletedMs: number;
  stageCreateMs: number;
  handoverP50Ms: number;
  handoverP99Ms: number;
  statementsPerTask: number;
  transactionsPerTask: number;
  serverTransactionsPerTask: number;
  walBytesPerTask: number;
  nodeCpuMsPerTask: number;
  postgresCpuMsPerTask: number;
  peakRssMb: number;
  liveHeapMb: number;
  /** Service Bus operations per task by kind and `total` (physical messages), as the in-process transport counted them. */
  serviceBusOperationsPerTask: Record<ServiceBusOperation | 'total', number>;
  functionsExecutionsPerTask: number;
  serviceBusBytesPerTask: number;
  peers: { graphileWorker?: PeerJson<GraphileSettings>; pgBoss?: PeerJson<PgBossSettings> };
  ceiling?: { updatesPerSecond: number };
  ratios: { vsGraphileWorker?: number; vsCeiling?: number; vsPgBoss?: number };
}

interface PeerJson<S> {
  tasksPerSecond: number;
  handoverP50Ms: number;
  statementsPerTask: number;
  transactionsPerTask: number;
  settings: S & { swept: boolean };
}

export interface PeersUsed {
  graphile: GraphileSettings;
  pgBoss: PgBossSettings;
  swept: { graphile: boolean; pgBoss: boolean };
}

export function jsonSummary(n: number, summaries: readonly Summary[], used: PeersUsed): JsonSummary | undefined {
  const find = (system: SystemName) => summaries.find((s) => s.system === system && s.n === n);
  const cm = find('coremachine');
  if (!cm) return undefined;
  const gw = find('graphile-worker');
  const boss = find('pg-boss');
  const ceiling = find('ceiling');
  const r = (v: number) => round(v, digitsFor(v) + 1);
  const peer = <S>(s: Summary, settings: S, swept: boolean): PeerJson<S> => ({
    tasksPerSecond: r(s.operationsPerSecond.median),
    handoverP50Ms: r(s.handoverP50Ms.median),
    statementsPerTask: r(s.statementsPerTask.median),
    transactionsPerTask: r(s.transactionsPerTask.median),
    settings: { ...settings, swept },
  });
  return {
    n,
    tasksPerSecond: r(cm.operationsPerSecond.median),
    submitToCompletedMs: r(cm.elapsedMs.median),
    stageCreateMs: r(cm.stageCreateMs.median),
    handoverP50Ms: r(cm.handoverP50Ms.median),
    handoverP99Ms: r(cm.handoverP99Ms.median),
    statementsPerTask: r(cm.statementsPerTask.median),
    transactionsPerTask: r(cm.transactionsPerTask.median),
    serverTransactionsPerTask: r(cm.serverTransactionsPerTask.median),
    walBytesPerTask: r(cm.walBytesPerTask.median),
    nodeCpuMsPerTask: r(cm.nodeCpuMsPerTask.median),
    postgresCpuMsPerTask: r(cm.postgresCpuMsPerTask.median),
    peakRssMb: r(cm.peakRssMb.median),
    liveHeapMb: r(cm.liveHeapMb.median),
    serviceBusOperationsPerTask: Object.fromEntries(Object.entries(cm.serviceBusPerTask).map(([kind, s]) => [kind, r(s.median)])) as Record<
      ServiceBusOperation | 'total',
      number
    >,
    functionsExecutionsPerTask: r(cm.functionsExecutionsPerTask.median),
    serviceBusBytesPerTask: r(cm.serviceBusBytesPerTask.median),
    peers: {
      ...(gw ? { graphileWorker: peer(gw, used.graphile, used.swept.graphile) } : {}),
      ...(boss ? { pgBoss: peer(boss, used.pgBoss, used.swept.pgBoss) } : {}),
    },
    ...(ceiling ? { ceiling: { updatesPerSecond: r(ceiling.operationsPerSecond.median) } } : {}),
    ratios: {
      ...(gw ? { vsGraphileWorker: r(cm.operationsPerSecond.median / gw.operationsPerSecond.median) } : {}),
      ...(ceiling ? { vsCeiling: r(cm.operationsPerSecond.median / ceiling.operationsPerSecond.median) } : {}),
      ...(boss ? { vsPgBoss: r(cm.operationsPerSecond.median / boss.operationsPerSecond.median) } : {}),
    },
  };
}
