import type { Readable } from 'node:stream';

/**
 * Where values too large for a PostgreSQL row live (a task's result or spec, a finalize result):
 * Azure Blob Storage in Azure and with Azurite (azure-blob-store.ts), a folder for `coremachine
 * dev` without Azurite (local-store.ts). The engine names every blob itself (payloadKey) and keeps
 * a reference to it in an engine-written column; the store only holds bytes.
 */
export interface PayloadStore {
  /** `azure-blob` or `local`: said in logs and `coremachine dev`'s banner. */
  readonly kind: string;
  /** Writes (or overwrites: its last-modified time is renewed, see the orphan sweep) the blob. */
  put(key: string, body: Buffer): Promise<void>;
  /** The blob's bytes, or undefined when there is no such blob. */
  get(key: string): Promise<Buffer | undefined>;
  /** The blob as a stream, or undefined when there is no such blob. */
  open(key: string): Promise<Readable | undefined>;
  /** Deletes the blobs; a key with no blob is not an error. */
  delete(keys: readonly string[]): Promise<void>;
  /** One page of blobs in name order, from where `continuation` left off; no continuation when the listing is complete. */
  list(page: { continuation?: string | undefined; maxResults: number }): Promise<{ items: StoredPayload[]; continuation?: string }>;
}

export interface StoredPayload {
  key: string;
  lastModified: Date;
}

/**
 * What an engine-written column (tasks.result_ref, tasks.parameters_ref, jobs.result_ref: migration
 * 019) holds for a value in the store: the blob's name, its length and the SHA-256 of its bytes,
 * both checked on every read.
 */
export interface PayloadRef {
  key: string;
  size: number;
  sha256: string;
}

/** Which value a blob holds: the field of a task (by id) or of the job itself. */
export type PayloadField = 'result' | 'parameters';
export interface PayloadOwner {
  jobId: string;
  /** A task id, or `job` for the job's own result. */
  owner: string;
  field: PayloadField;
}

/**
 * `{jobId}/{taskId | job}/{field}/{sha256}`: everything of a job under its id (what retention and
 * DELETE remove), and the row a blob belongs to readable from its name (what the orphan sweep
 * checks). Content-addressed within its field, so a retried write of the same value is the same blob.
 */
export function payloadKey(owner: PayloadOwner, sha256: string): string {
  return `${owner.jobId}/${owner.owner}/${owner.field}/${sha256}`;
}

const KEY = /^([0-9a-f]{64})\/(job|[0-9a-f]{64}-s\d{1,10}-t\d{1,10})\/(result|parameters)\/([0-9a-f]{64})$/;

/** The owner of a blob named by payloadKey; undefined for any other name (never the engine's to delete). */
export function parsePayloadKey(key: string): (PayloadOwner & { key: string; sha256: string }) | undefined {
  const match = KEY.exec(key);
  if (!match?.[1] || !match[2] || !match[3] || !match[4]) return undefined;
  // A task's blob sits under its own job.
  if (match[2] !== 'job' && !match[2].startsWith(`${match[1]}-`)) return undefined;
  return { key, jobId: match[1], owner: match[2], field: match[3] as PayloadField, sha256: match[4] };
}
