import { createHash } from 'node:crypto';
import { pipeline, Transform, type Readable } from 'node:stream';
import { PayloadCorruptError, PayloadLimitError, PayloadMissingError, PayloadStoreUnavailableError } from './payload-errors';
import { payloadKey, type PayloadOwner, type PayloadRef, type PayloadStore } from './payload-store';

export interface PayloadLimits {
  /** With a store: a value whose JSON is larger than this goes to the store (COREMACHINE_PAYLOAD_INLINE_MAX_BYTES). */
  inlineMaxBytes: number;
  /** Without a store, and for the values never moved (job parameters, signal payloads): the largest inline value (COREMACHINE_PAYLOAD_INLINE_CAP_BYTES). */
  inlineCapBytes: number;
  /** With a store: the largest value at all (COREMACHINE_PAYLOAD_MAX_BYTES). */
  maxBytes: number;
  /** The orphan sweep deletes an unreferenced blob only once it is this old (COREMACHINE_PAYLOAD_ORPHAN_GRACE_SECONDS). */
  orphanGraceMs: number;
}

/** The defaults of core/payloads/payload-settings.ts; docs/payloads.md says how the threshold was measured. */
export const DEFAULT_PAYLOAD_LIMITS: PayloadLimits = {
  inlineMaxBytes: 64 * 1024,
  inlineCapBytes: 1024 * 1024,
  maxBytes: 256 * 1024 * 1024,
  orphanGraceMs: 3600 * 1000,
};

/** A value as the engine stores it: its JSON text inline, or a reference to the blob that holds it. */
export type Placed = { json: string; ref?: undefined } | { ref: PayloadRef; json?: undefined };

/** Blobs read at once while iterating `previous`, and the bytes they may hold together (one larger blob is read alone). */
export const READ_CONCURRENCY = 8;
export const READ_WINDOW_BYTES = 64 * 1024 * 1024;

/**
 * Large values, in one place: where a value goes (inline or the store, or refused naming the
 * limit), reading a stored one back (its length and SHA-256 checked, so a missing or altered blob
 * is a typed failure, never a wrong value), and deleting. Without a store every value is inline
 * up to the cap, as before the store existed.
 */
export class Payloads {
  constructor(
    readonly store: PayloadStore | undefined,
    readonly limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS,
  ) {}

  /**
   * True when this JSON certainly stays inline, known without counting its bytes (UTF-8 takes at
   * most 3 bytes per UTF-16 unit): the check every small value takes.
   */
  fitsInline(json: string): boolean {
    return json.length * 3 <= (this.store ? this.limits.inlineMaxBytes : this.limits.inlineCapBytes);
  }

  /** The JSON inline when it is small enough, else written to the store as the blob of `owner`. */
  async place(json: string, owner: PayloadOwner, what: string): Promise<Placed> {
    if (this.fitsInline(json)) return { json };
    const bytes = Buffer.byteLength(json);
    if (!this.store) {
      if (bytes > this.limits.inlineCapBytes) {
        throw new PayloadLimitError(
          `${what} is ${bytes} bytes of JSON, over the ${this.limits.inlineCapBytes}-byte limit of a value stored inline in PostgreSQL (COREMACHINE_PAYLOAD_INLINE_CAP_BYTES): configure a payload store (COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL or COREMACHINE_PAYLOAD_BLOB_CONNECTION_STRING, see docs/payloads.md) or make it smaller`,
          bytes,
          this.limits.inlineCapBytes,
          'COREMACHINE_PAYLOAD_INLINE_CAP_BYTES',
        );
      }
      return { json };
    }
    if (bytes <= this.limits.inlineMaxBytes) return { json };
    if (bytes > this.limits.maxBytes) {
      throw new PayloadLimitError(
        `${what} is ${bytes} bytes of JSON, over the ${this.limits.maxBytes}-byte limit of any stored value (COREMACHINE_PAYLOAD_MAX_BYTES)`,
        bytes,
        this.limits.maxBytes,
        'COREMACHINE_PAYLOAD_MAX_BYTES',
      );
    }
    const body = Buffer.from(json, 'utf8');
    const sha256 = createHash('sha256').update(body).digest('hex');
    const ref: PayloadRef = { key: payloadKey(owner, sha256), size: body.length, sha256 };
    try {
      await this.store.put(ref.key, body);
    } catch (error) {
      throw new PayloadStoreUnavailableError(`writing ${what}`, error);
    }
    return { ref };
  }

  /** Values that are never moved to the store (job parameters, signal payloads) are refused over the inline cap. */
  checkInline(json: string, what: string): void {
    if (json.length * 3 <= this.limits.inlineCapBytes) return;
    const bytes = Buffer.byteLength(json);
    if (bytes <= this.limits.inlineCapBytes) return;
    throw new PayloadLimitError(
      `${what} is ${bytes} bytes of JSON, over the ${this.limits.inlineCapBytes}-byte limit of a value stored inline in PostgreSQL (COREMACHINE_PAYLOAD_INLINE_CAP_BYTES); job parameters and signal payloads always are: pass a reference of your own (a blob URL) instead of the data`,
      bytes,
      this.limits.inlineCapBytes,
      'COREMACHINE_PAYLOAD_INLINE_CAP_BYTES',
    );
  }

  /** A stored value, read and checked against its reference, then parsed. */
  async read(ref: PayloadRef, what: string): Promise<unknown> {
    const store = this.storeFor(ref, what);
    let body: Buffer | undefined;
    try {
      body = await store.get(ref.key);
    } catch (error) {
      throw new PayloadStoreUnavailableError(`reading ${what}`, error);
    }
    if (!body) throw new PayloadMissingError(what, ref.key);
    const sha256 = createHash('sha256').update(body).digest('hex');
    if (body.length !== ref.size || sha256 !== ref.sha256) throw new PayloadCorruptError(what, ref.key, ref, { size: body.length, sha256 });
    return JSON.parse(body.toString('utf8')) as unknown;
  }

  /**
   * The values of `items` in order, stored ones read in parallel: at most READ_CONCURRENCY blobs
   * and READ_WINDOW_BYTES at a time, so a page of large results never sits in memory at once.
   */
  async *inOrder<T>(
    items: readonly T[],
    refOf: (item: T) => PayloadRef | null,
    valueOf: (item: T) => unknown,
    what: (item: T) => string,
  ): AsyncGenerator<unknown> {
    let from = 0;
    while (from < items.length) {
      let to = from;
      let reads = 0;
      let bytes = 0;
      for (; to < items.length; to++) {
        const ref = refOf(items[to] as T);
        if (!ref) continue;
        if (reads > 0 && (reads === READ_CONCURRENCY || bytes + ref.size > READ_WINDOW_BYTES)) break;
        reads++;
        bytes += ref.size;
      }
      const batch = items.slice(from, to);
      const values = await Promise.all(
        batch.map((item) => {
          const ref = refOf(item);
          return ref ? this.read(ref, what(item)) : valueOf(item);
        }),
      );
      yield* values;
      from = to;
    }
  }

  /**
   * A stored value as a stream of its bytes, checked as they pass: a blob that turns out not to
   * match its reference ends the stream with PayloadCorruptError instead of ending it cleanly.
   */
  async open(ref: PayloadRef, what: string): Promise<Readable> {
    const store = this.storeFor(ref, what);
    let stream: Readable | undefined;
    try {
      stream = await store.open(ref.key);
    } catch (error) {
      throw new PayloadStoreUnavailableError(`reading ${what}`, error);
    }
    if (!stream) throw new PayloadMissingError(what, ref.key);
    const hash = createHash('sha256');
    let size = 0;
    const checked = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        hash.update(chunk);
        callback(null, chunk);
      },
      flush(callback) {
        const sha256 = hash.digest('hex');
        callback(size === ref.size && sha256 === ref.sha256 ? null : new PayloadCorruptError(what, ref.key, ref, { size, sha256 }));
      },
    });
    // pipeline, not pipe: a reader that goes away (a client hanging up) closes the blob's download too.
    return pipeline(stream, checked, () => undefined);
  }

  /** Deletes blobs (retention, DELETE, the orphan sweep); a blob already gone is not an error. */
  async delete(keys: readonly string[]): Promise<void> {
    if (keys.length === 0 || !this.store) return;
    try {
      await this.store.delete(keys);
    } catch (error) {
      throw new PayloadStoreUnavailableError(`deleting ${keys.length} blob(s)`, error);
    }
  }

  private storeFor(ref: PayloadRef, what: string): PayloadStore {
    if (this.store) return this.store;
    throw new PayloadMissingError(what, ref.key, 'it was written to a payload store, and none is configured now (COREMACHINE_PAYLOAD_STORE, docs/payloads.md)');
  }
}

/** Without a store: every value inline up to the default cap. */
export const INLINE_PAYLOADS = new Payloads(undefined);
