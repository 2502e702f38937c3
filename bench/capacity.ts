import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BenchOptions } from './args';
import { readDeploymentShape } from './capacity-infra';
import { renderCapacitySection, replaceCapacitySection, type MeasuredCosts } from './capacity-model';
import type { RunResult } from './protocol';
import { summarize } from './report';
import { baseSpec, describeRun, runOne } from './runner';
import { serverSettings, type BenchServer } from './server';
import { round } from './stats';

/**
 * `npm run bench -- --capacity`: measures CoreMachine's per-task costs at the largest --n, stores
 * them in bench/capacity-costs.json, and rewrites the generated part of docs/deploying.md's
 * capacity section from them (bench/capacity-model.ts). `--capacity-stored` does the second half
 * only, from the stored costs: after a limit or a price in bench/capacity-limits.ts changes.
 */

/** The repository: this file runs from dist/bench-build/bench/. */
const ROOT = path.resolve(__dirname, '..', '..', '..');
export const COSTS_FILE = path.join(ROOT, 'bench', 'capacity-costs.json');
const DOCS_FILE = path.join(ROOT, 'docs', 'deploying.md');

export async function measureCapacity(server: BenchServer, options: BenchOptions, log: (line: string) => void): Promise<MeasuredCosts> {
  const n = Math.max(...options.ns);
  const workers = options.workers[0] ?? 4;
  const batch = options.batch[0] ?? 128;
  const results: RunResult[] = [];
  for (let run = 1; run <= options.runs; run++) {
    const result = await runOne(server, options, baseSpec(options, 'coremachine', n, run, workers, batch));
    log(describeRun(result));
    results.push(result);
  }
  const s = summarize(results);
  const median = (spread: { median: number }) => round(spread.median, 6);
  const settings = await serverSettings(server.adminUrl);
  return {
    measuredAt: new Date().toISOString().slice(0, 10),
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
    environment: `${os.cpus().length} CPUs, load average ${os.loadavg()[0]?.toFixed(2) ?? '?'} at the end, PostgreSQL ${settings.server_version ?? '?'}, fsync ${settings.fsync ?? '?'}, in-process transport`,
    n,
    // Every run completed all its tasks: operations / n is the job's stage count.
    stages: Math.round(s.operations.median / n),
    runs: options.runs,
    workers,
    batch,
    tasksPerSecond: round(s.operationsPerSecond.median, 0),
    perTask: {
      serviceBus: Object.fromEntries(
        Object.entries(s.serviceBusPerTask).map(([kind, spread]) => [kind, median(spread)]),
      ) as MeasuredCosts['perTask']['serviceBus'],
      serviceBusBytes: median(s.serviceBusBytesPerTask),
      functionsExecutions: median(s.functionsExecutionsPerTask),
      transactions: median(s.serverTransactionsPerTask),
      walBytes: median(s.walBytesPerTask),
      walSyncs: median(s.walSyncsPerTask),
      nodeCpuMs: median(s.nodeCpuMsPerTask),
      postgresCpuMs: median(s.postgresCpuMsPerTask),
    },
  };
}

export function writeCosts(costs: MeasuredCosts): void {
  writeFileSync(COSTS_FILE, `${JSON.stringify(costs, null, 2)}\n`);
}

export function readCosts(): MeasuredCosts {
  return JSON.parse(readFileSync(COSTS_FILE, 'utf8')) as MeasuredCosts;
}

/** Renders the section from `costs` and the Bicep as it stands, writes it into docs/deploying.md, and returns it. */
export function updateCapacityDocs(costs: MeasuredCosts): string {
  const section = renderCapacitySection(costs, readDeploymentShape(ROOT));
  writeFileSync(DOCS_FILE, replaceCapacitySection(readFileSync(DOCS_FILE, 'utf8'), section));
  return section;
}
