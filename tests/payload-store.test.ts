import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../core/config';
import { AzureBlobPayloadStore } from '../core/payloads/azure-blob-store';
import { LocalPayloadStore } from '../core/payloads/local-store';
import { PayloadCorruptError, PayloadLimitError, PayloadMissingError, PayloadStoreUnavailableError } from '../core/payloads/payload-errors';
import { createPayloads } from '../core/payloads/payload-settings';
import { parsePayloadKey, payloadKey, type PayloadStore } from '../core/payloads/payload-store';
import { DEFAULT_PAYLOAD_LIMITS, Payloads } from '../core/payloads/payloads';
import { startAzurite, type Azurite } from './support/azurite';

/**
 * The payload store's contract, run against a real Azurite (the Azure Blob implementation) and the
 * local folder store alike, and what Payloads builds on it: placement by size, reads checked
 * against their reference, and refusals that name their setting.
 */

let azurite: Azurite;
let folder: string;
beforeAll(async () => {
  azurite = await startAzurite();
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'coremachine-payloads-'));
}, 60_000);
afterAll(async () => {
  await azurite.stop();
  fs.rmSync(folder, { recursive: true, force: true });
});

const stores: Array<[string, () => PayloadStore]> = [
  ['azure-blob (Azurite)', () => new AzureBlobPayloadStore({ connectionString: azurite.connectionString, container: `test-${randomUUID().slice(0, 8)}` })],
  ['local', () => new LocalPayloadStore(path.join(folder, randomUUID()))],
];

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const JOB = 'a'.repeat(64);

describe.each(stores)('%s store', (_name, make) => {
  test('put, get, open, list in name order with a continuation, delete; a missing blob is undefined, not an error', async () => {
    const store = make();
    expect(await store.get('nothing/here')).toBeUndefined();
    expect(await store.open('nothing/here')).toBeUndefined();
    expect(await store.list({ maxResults: 10 })).toEqual({ items: [] });
    const keys = ['b/2', 'a/1', 'c/3', 'a/0'];
    for (const key of keys) await store.put(key, Buffer.from(`value of ${key}`));
    await store.put('a/1', Buffer.from('value of a/1, again'));
    expect((await store.get('a/1'))?.toString()).toBe('value of a/1, again');
    const stream = await store.open('c/3');
    const chunks: Buffer[] = [];
    for await (const chunk of stream ?? []) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('value of c/3');

    const first = await store.list({ maxResults: 3 });
    expect(first.items.map((item) => item.key)).toEqual(['a/0', 'a/1', 'b/2']);
    expect(first.continuation).toBeDefined();
    for (const item of first.items) expect(Math.abs(item.lastModified.getTime() - Date.now())).toBeLessThan(60_000);
    const second = await store.list({ continuation: first.continuation, maxResults: 3 });
    expect(second.items.map((item) => item.key)).toEqual(['c/3']);
    expect(second.continuation).toBeUndefined();

    await store.delete(['a/0', 'b/2', 'never/was']);
    expect((await store.list({ maxResults: 10 })).items.map((item) => item.key)).toEqual(['a/1', 'c/3']);
  });

  test('Payloads: inline below the threshold, stored above it under the owner and the SHA-256, read back checked', async () => {
    const store = make();
    const payloads = new Payloads(store, { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: 100 });
    const owner = { jobId: JOB, owner: `${JOB}-s1-t0`, field: 'result' as const };
    expect(await payloads.place('{"small":true}', owner, 'x')).toEqual({ json: '{"small":true}' });
    const json = JSON.stringify({ big: 'é'.repeat(100) });
    const placed = await payloads.place(json, owner, 'result of task t0');
    expect(placed.ref).toEqual({ key: `${JOB}/${JOB}-s1-t0/result/${sha(json)}`, size: Buffer.byteLength(json), sha256: sha(json) });
    expect(parsePayloadKey(placed.ref?.key ?? '')).toMatchObject({ jobId: JOB, owner: `${JOB}-s1-t0`, field: 'result' });
    expect(await payloads.read(placed.ref!, 'result of task t0')).toEqual({ big: 'é'.repeat(100) });
  });

  test('a missing blob and an altered one are typed failures, never a wrong value; a stream of an altered one ends in an error', async () => {
    const store = make();
    const payloads = new Payloads(store, { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: 10 });
    const ref = (await payloads.place(JSON.stringify({ value: 'original value' }), { jobId: JOB, owner: 'job', field: 'result' }, 'r')).ref!;
    await store.put(ref.key, Buffer.from(JSON.stringify({ value: 'altered value!' })));
    await expect(payloads.read(ref, 'result of job j')).rejects.toThrow(PayloadCorruptError);
    await expect(payloads.read(ref, 'result of job j')).rejects.toThrow(/result of job j .* does not match its reference/);
    const stream = await payloads.open(ref, 'result of job j');
    const consumed = (async () => {
      for await (const _chunk of stream) void _chunk;
    })();
    await expect(consumed).rejects.toThrow(PayloadCorruptError);
    await store.delete([ref.key]);
    await expect(payloads.read(ref, 'result of job j')).rejects.toThrow(PayloadMissingError);
    await expect(payloads.open(ref, 'result of job j')).rejects.toThrow(/missing from the payload store/);
  });
});

test('without a store a value is inline up to the cap, and over it refused naming the setting; with one, over the largest value', async () => {
  const owner = { jobId: JOB, owner: 'job', field: 'result' as const };
  const inline = new Payloads(undefined, { ...DEFAULT_PAYLOAD_LIMITS, inlineCapBytes: 2048 });
  expect(await inline.place('"' + 'x'.repeat(2000) + '"', owner, 'result of task t')).toEqual({ json: '"' + 'x'.repeat(2000) + '"' });
  const refused = await inline.place('"' + 'x'.repeat(3000) + '"', owner, 'result of task t').catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(PayloadLimitError);
  expect((refused as Error).message).toMatch(/result of task t is 3002 bytes of JSON, over the 2048-byte limit .*COREMACHINE_PAYLOAD_INLINE_CAP_BYTES/);
  expect(() => inline.checkInline('"' + 'x'.repeat(3000) + '"', 'parameters for job type "t"')).toThrow(/COREMACHINE_PAYLOAD_INLINE_CAP_BYTES/);
  const stored = new Payloads(new LocalPayloadStore(path.join(folder, 'cap')), { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: 10, maxBytes: 2048 });
  await expect(stored.place('"' + 'x'.repeat(3000) + '"', owner, 'result of task t')).rejects.toThrow(/COREMACHINE_PAYLOAD_MAX_BYTES/);
  // Job parameters and signal payloads are never moved: the cap holds with a store too.
  expect(() => stored.checkInline('"' + 'x'.repeat(1024 * 1024) + '"', 'payload for signal "s"')).toThrow(PayloadLimitError);
});

test('a store that cannot be reached is the infrastructure failing (retryable), not the value', async () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
  const down: PayloadStore = {
    kind: 'down',
    put: () => Promise.reject(refused),
    get: () => Promise.reject(refused),
    open: () => Promise.reject(refused),
    delete: () => Promise.reject(refused),
    list: () => Promise.reject(refused),
  };
  const payloads = new Payloads(down, { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: 10 });
  const failure = await payloads.place('"' + 'x'.repeat(100) + '"', { jobId: JOB, owner: 'job', field: 'result' }, 'result of job j').catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(PayloadStoreUnavailableError);
  expect((failure as PayloadStoreUnavailableError).nonRetryable).toBe(false);
  expect((failure as Error).message).toBe('the payload store is unavailable for now (writing result of job j): connect ECONNREFUSED 127.0.0.1:9');
  await expect(payloads.read({ key: 'k', size: 1, sha256: 'x' }, 'v')).rejects.toThrow(PayloadStoreUnavailableError);
});

test('settings: auto chooses Azure Blob when a connection string or account URL is set, a folder on the embedded PostgreSQL, else none', () => {
  const dataDir = path.join(folder, 'data');
  const from = (env: Record<string, string>, embedded: boolean) => createPayloads(loadConfig(env).payloads, { dataDir, embedded });
  expect(from({}, false).store).toBeUndefined();
  expect(from({}, true).store?.kind).toBe('local');
  expect(from({ COREMACHINE_PAYLOAD_BLOB_CONNECTION_STRING: azurite.connectionString }, true).store?.kind).toBe('azure-blob');
  expect(from({ COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL: 'https://acct.blob.core.windows.net' }, false).store?.kind).toBe('azure-blob');
  expect(from({ COREMACHINE_PAYLOAD_STORE: 'none', COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL: 'https://acct.blob.core.windows.net' }, true).store).toBeUndefined();
  expect(() => from({ COREMACHINE_PAYLOAD_STORE: 'azure-blob' }, false)).toThrow(/COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL/);
  expect(() => loadConfig({ COREMACHINE_PAYLOAD_CONTAINER: 'Bad_Name' })).toThrow(/COREMACHINE_PAYLOAD_CONTAINER/);
  expect(() => loadConfig({ COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL: 'not a url' })).toThrow(/COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL/);
  expect(loadConfig({ COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL: '' }).payloads.accountUrl).toBeUndefined();
  expect(loadConfig({}).payloads.limits).toEqual(DEFAULT_PAYLOAD_LIMITS);
});

test('blob names say whose value they hold; other names are never taken for the engine’s', () => {
  const key = payloadKey({ jobId: JOB, owner: `${JOB}-s2-t7`, field: 'parameters' }, 'b'.repeat(64));
  expect(key).toBe(`${JOB}/${JOB}-s2-t7/parameters/${'b'.repeat(64)}`);
  expect(parsePayloadKey(key)).toEqual({ key, jobId: JOB, owner: `${JOB}-s2-t7`, field: 'parameters', sha256: 'b'.repeat(64) });
  for (const other of ['somebody/else.txt', `${JOB}/job/result/short`, `${JOB}/../result/${'b'.repeat(64)}`, `${JOB}/job/other/${'b'.repeat(64)}`]) {
    expect(parsePayloadKey(other)).toBeUndefined();
  }
});

test('reading many stored values in order keeps at most 8 blobs and 64 MB in flight, and yields them in order', async () => {
  let inFlight = 0;
  let bytesInFlight = 0;
  const peak = { reads: 0, bytes: 0 };
  const bodies = new Map<string, Buffer>();
  const slow: PayloadStore = {
    kind: 'counting',
    put: (key, body) => Promise.resolve(void bodies.set(key, body)),
    get: async (key) => {
      const body = bodies.get(key);
      inFlight++;
      bytesInFlight += body?.length ?? 0;
      peak.reads = Math.max(peak.reads, inFlight);
      peak.bytes = Math.max(peak.bytes, bytesInFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      bytesInFlight -= body?.length ?? 0;
      return body;
    },
    open: () => Promise.resolve(undefined),
    delete: () => Promise.resolve(),
    list: () => Promise.resolve({ items: [] }),
  };
  const payloads = new Payloads(slow, { ...DEFAULT_PAYLOAD_LIMITS, inlineMaxBytes: 10 });
  const place = async (i: number, bytes: number) => {
    const placed = await payloads.place(JSON.stringify({ i, pad: 'p'.repeat(bytes) }), { jobId: JOB, owner: `${JOB}-s1-t${i}`, field: 'result' }, `r${i}`);
    return { i, ref: placed.ref ?? null, value: placed.json === undefined ? null : (JSON.parse(placed.json) as unknown) };
  };
  // Small stored values, with an inline one among them: 8 reads at a time.
  const small = await Promise.all(range(30).map((i) => place(i, i === 7 ? 0 : 1000)));
  const read: number[] = [];
  for await (const value of payloads.inOrder(
    small,
    (row) => row.ref,
    (row) => row.value,
    (row) => `r${row.i}`,
  ))
    read.push((value as { i: number }).i);
  expect(read).toEqual(range(30));
  expect(peak.reads).toBe(8);
  // 20 MB values: three fit in the 64 MB window, a fourth waits.
  peak.reads = 0;
  const large = await Promise.all(range(7).map((i) => place(i, 20 * 1024 * 1024)));
  let count = 0;
  for await (const _value of payloads.inOrder(
    large,
    (row) => row.ref,
    (row) => row.value,
    (row) => `r${row.i}`,
  ))
    count++;
  expect(count).toBe(7);
  expect(peak.reads).toBe(3);
  expect(peak.bytes).toBeLessThanOrEqual(64 * 1024 * 1024);
}, 60_000);

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
