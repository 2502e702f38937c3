import { createHash } from 'node:crypto';
import { z } from 'zod';
import { defineJob, defineTask, type JobView, type TaskRecord } from '../models';
import { startAzurite, type Azurite } from './support/azurite';
import { useDevServer } from './support/dev-server';
import { appRegistry } from './support/registry';

/**
 * The full local stack of docs/payloads.md: `coremachine dev` (the local runtime and the dev
 * server over the same route table as the Functions app) with its payload store in a real Azurite.
 * A task returns ~50 MB; the result goes to a blob, the task list carries a link, the link streams
 * the bytes, and the process's memory stays within a few copies of the value.
 */

const MB = 1024 * 1024;
const SIZE = 50 * MB;

const huge = defineTask({
  type: 'pl.huge',
  parameters: z.object({ megabytes: z.number().int() }),
  handler: ({ megabytes }) => ({ data: 'h'.repeat(megabytes * MB) }),
});
const hugeJob = defineJob({ type: 'pl.huge_job', parameters: z.object({ megabytes: z.number().int() }) })
  .stage({ name: 'huge', task: huge, fanOut: ({ parameters }) => [{ megabytes: parameters.megabytes }] })
  .finalize(({ previous }) => ({ results: previous.count }));

let azurite: Azurite;
const env: Record<string, string> = {};
beforeAll(async () => {
  azurite = await startAzurite();
  env.COREMACHINE_PAYLOAD_BLOB_CONNECTION_STRING = azurite.connectionString;
  env.COREMACHINE_PAYLOAD_CONTAINER = 'dev-payloads';
}, 60_000);
const dev = useDevServer(appRegistry(hugeJob), { env });
afterAll(async () => {
  await azurite.stop();
});

/** The size and SHA-256 of the result's JSON, computed without building it (the test must not add 100 MB of its own). */
function expectedRef(): { size: number; sha256: string } {
  const hash = createHash('sha256').update('{"data":"');
  const chunk = 'h'.repeat(MB);
  for (let i = 0; i < SIZE / MB; i++) hash.update(chunk);
  hash.update('"}');
  return { size: SIZE + '{"data":""}'.length, sha256: hash.digest('hex') };
}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(`${dev.server.url}${path}`, { ...init, headers: { 'content-type': 'application/json', ...init.headers } });
  if (!response.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

test('a 50 MB result through coremachine dev: stored in Azurite, linked from the task list, streamed by the link, memory bounded', async () => {
  const rss = { baseline: process.memoryUsage().rss, peak: 0 };
  const sampler = setInterval(() => (rss.peak = Math.max(rss.peak, process.memoryUsage().rss)), 10);
  try {
    const submitted = await api<JobView>('/api/jobs/pl.huge_job', { method: 'POST', body: JSON.stringify({ megabytes: SIZE / MB }) });
    let job = submitted;
    for (let i = 0; i < 600 && ['QUEUED', 'PROCESSING'].includes(job.status); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      job = await api<JobView>(`/api/jobs/${submitted.jobId}`);
    }
    expect(job).toMatchObject({ status: 'COMPLETED', result: { results: 1 } });

    // The task list is small: a link with the size and hash instead of 50 MB.
    const listing = await fetch(`${dev.server.url}/api/jobs/${job.jobId}/tasks`);
    const listingText = await listing.text();
    expect(listingText.length).toBeLessThan(4096);
    const [task] = (JSON.parse(listingText) as { tasks: TaskRecord[] }).tasks;
    const expected = expectedRef();
    expect(task?.result).toBeNull();
    expect(task?.resultRef).toEqual({ ...expected, url: `/api/jobs/${job.jobId}/tasks/${task?.taskId}/result` });
    const row = await dev.db.pool.query<{ bytes: number }>('SELECT pg_column_size(t.*) AS bytes FROM coremachine.tasks t WHERE job_id = $1', [job.jobId]);
    expect(row.rows[0]?.bytes).toBeLessThan(2048);

    // The link streams the bytes, with their length and hash.
    const response = await fetch(`${dev.server.url}${task?.resultRef?.url}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(expected.size));
    expect(response.headers.get('x-coremachine-sha256')).toBe(expected.sha256);
    const hash = createHash('sha256');
    let size = 0;
    const reader = response.body?.getReader();
    for (let chunk = await reader?.read(); chunk && !chunk.done; chunk = await reader?.read()) {
      const bytes = chunk.value as Uint8Array;
      size += bytes.length;
      hash.update(bytes);
    }
    expect({ size, sha256: hash.digest('hex') }).toEqual(expected);

    // An inline value is served on the same kind of route; a task of another job is not found.
    expect(await api(`/api/jobs/${job.jobId}/result`)).toEqual({ results: 1 });
    expect(await api(`/api/jobs/${job.jobId}/tasks/${task?.taskId}/parameters`)).toEqual({ megabytes: SIZE / MB });
    const elsewhere = await fetch(`${dev.server.url}/api/jobs/${'0'.repeat(64)}/tasks/${task?.taskId}/result`);
    expect(elsewhere.status).toBe(404);
    expect(await elsewhere.json()).toMatchObject({ error: { type: 'TaskNotFoundError' } });
  } finally {
    clearInterval(sampler);
  }
  // The handler's string, its JSON and the bytes written (~150 MB) are what a 50 MB value costs;
  // the engine adds no copies per reader, and serving it streams.
  const growthMb = (rss.peak - rss.baseline) / MB;
  process.stderr.write(`[payloads-dev] RSS baseline ${Math.round(rss.baseline / MB)} MB, peak ${Math.round(rss.peak / MB)} MB (+${Math.round(growthMb)} MB)\n`);
  expect(growthMb).toBeLessThan(300);
}, 120_000);
