import { startAzurite, type Azurite } from '../tests/support/azurite';
import type { BenchOptions } from './args';
import type { RunResult } from './protocol';
import { active, baseSpec, describeRun, runOne } from './runner';
import type { BenchServer } from './server';
import { median, round } from './stats';

/**
 * `npm run bench -- --result-bytes 1024,102400,5242880`: CoreMachine alone, 3 stages of tasks whose
 * results are that large (random base64, so TOAST cannot shrink them), with every result inline in
 * PostgreSQL and with every result in a payload store on an Azurite started for the bench. Measured
 * per task: the growth of the coremachine tables (heap, TOAST, indexes), WAL, the bytes in the store,
 * and throughput. What the threshold COREMACHINE_PAYLOAD_INLINE_MAX_BYTES is chosen from.
 */
export interface PayloadRow {
  resultBytes: number;
  store: 'none' | 'azurite';
  n: number;
  runs: number;
  tasksPerSecond: number;
  pgBytesPerTask: number;
  walBytesPerTask: number;
  blobBytesPerTask: number;
  /** PostgreSQL's CPU per task (its backends' schedstat): the resource every instance shares. */
  postgresCpuMsPerTask: number;
  peakRssMb: number;
}

/** A stage holds about this much result data: N per stage is capped by it (5 MB results: 40 per stage). */
const STAGE_BYTES = 200 * 1024 * 1024;
const MIN_N = 10;

export function payloadRunN(options: BenchOptions, resultBytes: number): number {
  const requested = options.ns.length > 0 ? Math.max(...options.ns) : 1000;
  return Math.max(MIN_N, Math.min(requested, Math.floor(STAGE_BYTES / resultBytes)));
}

export async function payloadBenchmark(
  server: BenchServer,
  options: BenchOptions,
  log: (line: string) => void,
): Promise<{ rows: PayloadRow[]; table: string }> {
  const stores: Array<'none' | 'azurite'> = options.payloadStore === 'both' ? ['none', 'azurite'] : [options.payloadStore];
  const workers = options.workers[0] ?? 4;
  const batch = options.batch[0] ?? 128;
  let azurite: Azurite | undefined;
  const rows: PayloadRow[] = [];
  try {
    if (stores.includes('azurite')) {
      azurite = await startAzurite();
      active.service = azurite;
      log(`Azurite (blob) on 127.0.0.1:${azurite.port}`);
    }
    for (const resultBytes of options.resultBytes) {
      const n = payloadRunN(options, resultBytes);
      const results = new Map<string, RunResult[]>(stores.map((store) => [store, []]));
      for (let run = 1; run <= options.runs; run++) {
        // Interleaved run by run, as the side-by-side bench does: drift on the machine hits both alike.
        for (const store of stores) {
          const spec = {
            ...baseSpec(options, 'coremachine', n, run, workers, batch),
            timeoutMs: (options.timeoutS ?? 300) * 1000,
            payload: {
              resultBytes,
              store,
              inlineMaxBytes: options.payloadInlineMax,
              ...(azurite ? { connectionString: azurite.connectionString, container: `bench-${resultBytes}-${run}` } : {}),
            },
          };
          try {
            const result = await runOne(server, options, spec);
            log(`${describeRun(result)} [results ${resultBytes} B, ${store === 'none' ? 'inline' : 'payload store'}]`);
            results.get(store)?.push(result);
          } catch (error) {
            log(`  coremachine results ${resultBytes} B (${store}) run ${run} FAILED: ${error instanceof Error ? error.message : String(error)}`);
          }
        }
      }
      for (const store of stores) {
        const done = results.get(store) ?? [];
        if (done.length === 0) continue;
        const per = (pick: (r: RunResult) => number) => median(done.map(pick));
        rows.push({
          resultBytes,
          store,
          n,
          runs: done.length,
          tasksPerSecond: per((r) => r.operationsPerSecond),
          pgBytesPerTask: per((r) => r.payload?.pgBytesPerTask ?? Number.NaN),
          walBytesPerTask: per((r) => (r.walBytes ?? Number.NaN) / r.operations),
          blobBytesPerTask: per((r) => r.payload?.blobBytesPerTask ?? Number.NaN),
          postgresCpuMsPerTask: per((r) => (r.postgresCpuMs ?? Number.NaN) / r.operations),
          peakRssMb: per((r) => r.peakRssMb),
        });
      }
    }
  } finally {
    await azurite?.stop();
    active.service = undefined;
  }
  return { rows, table: payloadTable(rows, options) };
}

const kb = (bytes: number) => (bytes >= 10_240 ? `${round(bytes / 1024, 0).toLocaleString('en-US')} KB` : `${round(bytes, 0).toLocaleString('en-US')} B`);

function payloadTable(rows: readonly PayloadRow[], options: BenchOptions): string {
  const lines = [
    `Results of each size, inline in PostgreSQL and in a payload store (Azurite, values above ${options.payloadInlineMax} B); median of ${options.runs} run(s), 3 stages x N tasks.`,
    '',
    '| result | where | N / stage | tasks/s | PostgreSQL bytes / task | WAL bytes / task | PostgreSQL CPU ms / task | store bytes / task | peak RSS MB |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    lines.push(
      `| ${kb(row.resultBytes)} | ${row.store === 'none' ? 'inline' : 'payload store'} | ${row.n} | ${round(row.tasksPerSecond, 0)} | ${kb(row.pgBytesPerTask)} | ${kb(row.walBytesPerTask)} | ${round(row.postgresCpuMsPerTask, 2)} | ${kb(row.blobBytesPerTask)} | ${round(row.peakRssMb, 0)} |`,
    );
  }
  return lines.join('\n');
}
