/**
 * The deployment artifact that azd uploads (`npm run package`, scripts/package.ts): how big it is,
 * and how long a fresh Node process takes from its start until the app has registered every
 * function, loaded the way the Functions worker loads it (scripts/artifact-host/) from an unpacked
 * copy outside the repository. Without and with Application Insights configured (Azure has it on;
 * the connection string points at a loopback port nobody listens on). One unmeasured load first,
 * so every measured run reads the files from the page cache alike.
 *
 *   npm run bench:artifact -- [--runs 9] [--node /path/to/node] [--json]
 *
 * --node loads the artifact with another Node binary (Azure runs Node 22; .ci/run shows how to get one).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadArtifact, prepareFakeWorker, unpack } from '../scripts/artifact-host/host';
import { buildArtifact } from '../scripts/package';
import { MB, round, spread, type Spread } from './stats';

const TARGET_ZIP_BYTES = 10 * MB;
const TARGET_LOAD_MS = 500;

const MODES = {
  'telemetry off': {},
  'telemetry on': {
    APPLICATIONINSIGHTS_CONNECTION_STRING:
      'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/',
    APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
  },
} as const;
type Mode = keyof typeof MODES;

/** The command line, strictly: an unknown or misspelt flag is an error, not a run with defaults. */
function parseFlags(): { runs: number; json: boolean; node: string } {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '9' }, json: { type: 'boolean', default: false }, node: { type: 'string' } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs takes a positive integer');
  if (values.node === '') throw new Error('--node takes the path of a node binary');
  return { runs, json: values.json, node: values.node === undefined ? process.execPath : path.resolve(values.node) };
}

const ms = (s: Spread) => `${Math.round(s.median)} ms (${Math.round(s.min)}–${Math.round(s.max)})`;
const megabytes = (bytes: number) => `${round(bytes / MB, 2)} MB`;

async function main(): Promise<void> {
  const { runs, json, node } = parseFlags();
  const nodeVersion = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-bench-artifact-'));
  try {
    const buildStarted = performance.now();
    const artifact = await buildArtifact({ dir: path.join(tmp, 'build', 'deploy') });
    const buildMs = performance.now() - buildStarted;
    const appDir = path.join(tmp, 'app');
    mkdirSync(appDir);
    unpack(artifact.zip, appDir);
    const worker = prepareFakeWorker(path.join(tmp, 'worker'));
    const load = (mode: Mode) => loadArtifact(appDir, worker, { node, env: { PATH: process.env.PATH ?? '', HOME: appDir, ...MODES[mode] } });

    const modes = Object.keys(MODES) as Mode[];
    for (const mode of modes) await load(mode);
    const loaded: Record<Mode, number[]> = { 'telemetry off': [], 'telemetry on': [] };
    const wall: Record<Mode, number[]> = { 'telemetry off': [], 'telemetry on': [] };
    const cpu: Record<Mode, number[]> = { 'telemetry off': [], 'telemetry on': [] };
    let functions = 0;
    // Interleaved, so drift on a shared machine hits both modes alike.
    for (let run = 0; run < runs; run++) {
      for (const mode of modes) {
        const { report, wallMs } = await load(mode);
        loaded[mode].push(report.loadedMs);
        wall[mode].push(wallMs);
        cpu[mode].push(report.cpuMs);
        functions = report.functions.length;
      }
    }

    const load1 = os.loadavg()[0] ?? 0;
    const lines = [
      '# Deployment artifact — size and cold load',
      '',
      `Loaded with Node ${nodeVersion}, ${os.cpus().length} CPUs, load average ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' / ')} at the end${load1 > 1 ? ' — WARNING: the machine is busy; load times are inflated' : ''}. Built in ${Math.round(buildMs)} ms.`,
      '',
      '| zip | unpacked | files | npm packages bundled | functions registered |',
      '|---:|---:|---:|---:|---:|',
      `| ${megabytes(artifact.zipBytes)} | ${megabytes(artifact.unpackedBytes)} | ${artifact.files.length} | ${artifact.bundledPackages.length} | ${functions} |`,
      '',
      `Cold load, median (min–max) of ${runs} runs: process start → every function registered, the CPU time the child used until then, and spawn → exit as the parent saw it.`,
      '',
      '| | start → registered | CPU until registered | spawn → exit |',
      '|---|---:|---:|---:|',
      ...modes.map((mode) => `| ${mode} | ${ms(spread(loaded[mode]))} | ${ms(spread(cpu[mode]))} | ${ms(spread(wall[mode]))} |`),
      '',
      `Targets: zip under ${TARGET_ZIP_BYTES / MB} MB (${artifact.zipBytes < TARGET_ZIP_BYTES ? 'met' : 'MISSED'}), cold load under ${TARGET_LOAD_MS} ms (${modes.map((mode) => `${mode}: ${spread(loaded[mode]).median < TARGET_LOAD_MS ? 'met' : 'MISSED'}`).join(', ')}).`,
    ];
    (json ? process.stderr : process.stdout).write(`${lines.join('\n')}\n`);
    if (json) {
      const summary = Object.fromEntries(modes.map((mode) => [mode, { loadedMs: spread(loaded[mode]), cpuMs: spread(cpu[mode]), wallMs: spread(wall[mode]) }]));
      process.stdout.write(
        `${JSON.stringify({ node: nodeVersion, zipBytes: artifact.zipBytes, unpackedBytes: artifact.unpackedBytes, files: artifact.files.length, bundledPackages: artifact.bundledPackages.length, functions, runs, buildMs: Math.round(buildMs), coldLoad: summary })}\n`,
      );
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:artifact failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
