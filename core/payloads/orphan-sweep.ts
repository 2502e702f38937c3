import type { Queryable } from '../db/pool';
import { advancePayloadSweepCursor, readPayloadSweepCursor, referencedPayloadKeys } from '../state/payloads-store';
import { PayloadStoreUnavailableError } from './payload-errors';
import { parsePayloadKey } from './payload-store';
import type { Payloads } from './payloads';

export interface OrphanSweepReport {
  /** Blobs listed in this sweep's page of the store. */
  listed: number;
  /** Of those, unreferenced and older than the grace period: deleted. */
  deleted: number;
  /** True when this page ended the listing: the next sweep starts from the beginning again. */
  wrapped: boolean;
}

export const NO_ORPHAN_SWEEP: OrphanSweepReport = { listed: 0, deleted: 0, wrapped: false };

/**
 * One page of the payload store's listing, from where the last sweep left off (kept in the
 * database, so instances that come and go still walk the whole container): every blob named by the
 * engine that no row references and that is older than the grace period is deleted. That is what a
 * crash between a blob's write and its row's commit leaves, and what a failed delete after a
 * retention purge or DELETE left. Every writer writes its blob again right before its commit, which
 * renews the blob's time, so a blob younger than the grace period may still be about to be
 * referenced and is left alone. Sweeps on several instances at once only repeat each other's work.
 */
export async function sweepOrphanPayloads(db: Queryable, payloads: Payloads, pageSize: number, now: Date = new Date()): Promise<OrphanSweepReport> {
  const store = payloads.store;
  if (!store) return NO_ORPHAN_SWEEP;
  const from = await readPayloadSweepCursor(db);
  let page: Awaited<ReturnType<typeof store.list>>;
  try {
    page = await store.list({ continuation: from ?? undefined, maxResults: pageSize });
  } catch (error) {
    throw new PayloadStoreUnavailableError('listing blobs for the orphan sweep', error);
  }
  const oldEnough = now.getTime() - payloads.limits.orphanGraceMs;
  const candidates = page.items
    .filter((item) => item.lastModified.getTime() <= oldEnough)
    .map((item) => parsePayloadKey(item.key))
    .filter((parsed) => parsed !== undefined);
  const referenced = await referencedPayloadKeys(db, candidates);
  const orphans = candidates.filter((candidate) => !referenced.has(candidate.key)).map((candidate) => candidate.key);
  await payloads.delete(orphans);
  await advancePayloadSweepCursor(db, from, page.continuation ?? null);
  return { listed: page.items.length, deleted: orphans.length, wrapped: page.continuation === undefined };
}
