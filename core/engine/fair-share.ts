import type pg from 'pg';
import type { Registry } from '../registry';
import { claimFairTasks, fairKeysWithReadyTasks, type FairKeyLoad } from '../state/fair-share-store';
import type { ClaimedTask } from '../state/tasks-store';
import { leaseOfType } from './run-task';

/**
 * Priorities and fair share at claim (023_fair_share.sql). A task message of a job that carries a
 * priority or a fairness key is a right to run one ready task of its type, not necessarily its own:
 * the claim serves the highest priority class that has ready tasks and, within it, shares the
 * batch's slots between fairness keys so that running tasks per unit of weight even out. A tenant
 * whose 100 tasks arrive behind another's 100,000 messages is served by those messages.
 *
 * Nothing is lost: every message claims one task while any is ready, so messages never number
 * fewer than unclaimed tasks; a message whose own task was claimed early claims another, or finds
 * none and is a duplicate. Everything is decided in SQL on committed state, so it holds across
 * instances. Limited and remote task types are outside the scheme (their claims have their own path).
 */

/** One message's share: the task claimed for it. */
export interface SharedClaim {
  /** Index of the message in its batch. */
  index: number;
  task: ClaimedTask;
}

/** How many of `slots` claims each (class, key) pair gets: the best class's keys by weighted water-filling. */
export function shareSlots(loads: readonly FairKeyLoad[], slots: number): Array<{ rank: number; key: string; count: number }> {
  const best = Math.min(...loads.map((load) => load.rank));
  const keys = loads.filter((load) => load.rank === best).map((load) => ({ ...load, count: 0 }));
  for (let given = 0; given < slots && keys.length > 0; given++) {
    // The key with the fewest running (and just given) tasks per unit of weight gets the next slot.
    let next = keys[0] as (typeof keys)[number];
    for (const key of keys) if ((key.running + key.count) / key.weight < (next.running + next.count) / next.weight) next = key;
    next.count++;
  }
  return keys.filter((key) => key.count > 0).map(({ rank, key, count }) => ({ rank, key, count }));
}

/** At most this many (class, key) pairs are read per claim: more keys than a batch's slots cannot all get one. */
const MAX_KEYS_READ = 256;

/**
 * Claims one ready task per message for the messages of tasks in the scheme, type by type: first
 * by share in the best class, then (when those keys' tasks cannot run now: paused, retry not due)
 * whatever is ready, best class first. Returns the claims in message order; a message may get none.
 */
export async function claimByShare(
  pool: pg.Pool,
  registry: Registry,
  messages: ReadonlyArray<{ index: number; taskType: string }>,
  workerId: string | null,
): Promise<SharedClaim[]> {
  const byType = new Map<string, number[]>();
  for (const { index, taskType } of messages) byType.set(taskType, [...(byType.get(taskType) ?? []), index]);
  const shared: SharedClaim[] = [];
  for (const [taskType, indices] of byType) {
    const lease = leaseOfType(registry, taskType);
    const loads = await fairKeysWithReadyTasks(pool, taskType, MAX_KEYS_READ);
    if (loads.length === 0) continue;
    const share = shareSlots(loads, indices.length);
    const claimed = await claimFairTasks(
      pool,
      taskType,
      { ranks: share.map((s) => s.rank), keys: share.map((s) => s.key), counts: share.map((s) => s.count) },
      lease,
      indices.length,
      workerId,
    );
    const missing = indices.length - claimed.length;
    if (missing > 0) {
      claimed.push(
        ...(await claimFairTasks(
          pool,
          taskType,
          { ranks: loads.map((l) => l.rank), keys: loads.map((l) => l.key), counts: loads.map(() => missing) },
          lease,
          missing,
          workerId,
        )),
      );
    }
    claimed.forEach((task, position) => shared.push({ index: indices[position] as number, task }));
  }
  return shared;
}
