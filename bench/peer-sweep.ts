import type { BenchOptions } from './args';
import type { GraphileSettings, PgBossSettings, SystemName } from './protocol';
import { baseSpec, describeRun, runOne, type PeerSettings } from './runner';
import type { BenchServer } from './server';
import { round } from './stats';

/**
 * --peer-sweep: each peer at its best. One short run per setting at --peer-sweep-n, in a fresh
 * database and process like every run; the fastest setting is then used for the peer's runs at
 * full N. A failed setting is reported and skipped.
 */
export const GRAPHILE_GRID: GraphileSettings[] = [1, 2, 4, 8].flatMap((concurrency) =>
  [-1, 500].flatMap((localQueueSize) => [0, 250].map((completeJobBatchDelayMs) => ({ concurrency, localQueueSize, completeJobBatchDelayMs }))),
);

export const PGBOSS_GRID: PgBossSettings[] = [1, 2, 4].flatMap((workers) => [50, 200, 1000].map((batchSize) => ({ workers, batchSize })));

export interface PeerChoice extends PeerSettings {
  /** Which peers' settings came from the sweep (the others are the flags' values). */
  swept: { graphile: boolean; pgBoss: boolean };
  /** Markdown table of every setting tried. */
  table: string;
}

interface Tried {
  system: SystemName;
  settings: string;
  tasksPerSecond: number;
}

export async function sweepPeers(server: BenchServer, options: BenchOptions, log: (line: string) => void): Promise<PeerChoice> {
  const workers = options.workers[0] ?? 4;
  const batch = options.batch[0] ?? 64;
  const n = options.peerSweepN;
  const tried: Tried[] = [];
  const choice: PeerChoice = { graphile: options.graphile, pgBoss: options.pgBoss, swept: { graphile: false, pgBoss: false }, table: '' };

  async function best<T extends object>(system: SystemName, grid: readonly T[], specFor: (setting: T) => PeerSettings): Promise<T | undefined> {
    let winner: { setting: T; rate: number } | undefined;
    for (const setting of grid) {
      const label = Object.entries(setting)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(', ');
      try {
        const result = await runOne(server, options, baseSpec(options, system, n, 1, workers, batch, specFor(setting)));
        log(`${describeRun(result)} (peer sweep)`);
        tried.push({ system, settings: label, tasksPerSecond: result.operationsPerSecond });
        if (!winner || result.operationsPerSecond > winner.rate) winner = { setting, rate: result.operationsPerSecond };
      } catch (error) {
        log(`  ${system} peer sweep [${label}] FAILED: ${error instanceof Error ? error.message.split('\n', 1)[0] : String(error)}`);
        tried.push({ system, settings: label, tasksPerSecond: Number.NaN });
      }
    }
    return winner?.setting;
  }

  if (options.systems.includes('graphile-worker')) {
    const graphile = await best('graphile-worker', GRAPHILE_GRID, (setting) => ({ graphile: setting, pgBoss: options.pgBoss }));
    if (graphile) choice.graphile = graphile;
    choice.swept.graphile = graphile !== undefined;
  }
  if (options.systems.includes('pg-boss')) {
    const pgBoss = await best('pg-boss', PGBOSS_GRID, (setting) => ({ graphile: options.graphile, pgBoss: setting }));
    if (pgBoss) choice.pgBoss = pgBoss;
    choice.swept.pgBoss = pgBoss !== undefined;
  }
  const lines = [`Peer sweep at N = ${n.toLocaleString('en-US')} (1 run per setting):`, '', '| system | settings | tasks/s |', '|---|---|---:|'];
  for (const t of tried)
    lines.push(`| ${t.system} | ${t.settings} | ${Number.isFinite(t.tasksPerSecond) ? round(t.tasksPerSecond, 0).toLocaleString('en-US') : 'failed'} |`);
  choice.table = lines.join('\n');
  return choice;
}

/** One line naming the settings a peer ran with and where they came from. */
export function describePeers(choice: PeerSettings & { swept?: { graphile: boolean; pgBoss: boolean } }): string {
  const g = choice.graphile;
  const b = choice.pgBoss;
  const from = (swept: boolean | undefined) => (swept ? 'best of --peer-sweep' : 'flags/defaults, not swept');
  return [
    `graphile-worker: concurrency ${g.concurrency}, localQueue ${g.localQueueSize > 0 ? g.localQueueSize : 'off'}, completeJobBatchDelay ${g.completeJobBatchDelayMs < 0 ? 'off' : `${g.completeJobBatchDelayMs} ms`} (${from(choice.swept?.graphile)})`,
    `pg-boss: ${b.workers} work() registrations x batchSize ${b.batchSize}, polling 0.5 s + notifyWorker (${from(choice.swept?.pgBoss)})`,
  ].join('; ');
}
