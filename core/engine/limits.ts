import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { TaskLimits } from '../../models';
import type { Registry } from '../registry';
import {
  claimLimitedBatch,
  type LimitedBatchRequest,
  countLimitHolders,
  describeLimitedTasks,
  lockLimitKey,
  markSlotWaiters,
  foldSlotTallies,
  lockSlotRecount,
  reconcileSlotTallies,
  queuedRemoteLimitKeys,
  refillRateBucket,
  spendRateTokens,
  waitingTasksOfKey,
  type LimitedTaskState,
  type SlotRecount,
  NOTHING_RECOUNTED,
} from '../state/limits-store';
import { claimRemoteTasksOfKey, type RemoteClaim } from '../state/remote-tasks-store';
import { claimTasks, type ClaimedTask } from '../state/tasks-store';
import type { UnitOfWork } from './unit-of-work';
import { commit } from './commit';
import { retryTransient } from '../db/retry-transient';
import { GroupCommitter } from './group-commit';
import type { RecentDeferrals } from './recent-deferrals';

/**
 * Claims of task types with global limits (models/task-limits.ts). A batch under concurrency limits
 * alone is claimed in one call that takes each key's advisory lock in turn, counts its holders and
 * claims what fits (core/state/limits-store.ts, claimLimitedBatch). A key with a rate limit is
 * claimed in its own short unit of work holding the key's lock: count the holders, read the rate
 * bucket, claim at most what is free, spend the tokens, commit. A message
 * whose task cannot start now is deferred: the task stays QUEUED at the same attempt and the
 * settlement policy schedules the message again (core/settlement.ts) — not an attempt, never a
 * failure, never a dead letter.
 */

export interface LimitedClaimRequest {
  taskId: string;
  attempt: number;
  taskType: string;
  leaseSeconds: number;
}

export interface Deferral {
  reason: string;
  limitKey: string;
  /** When the rate limit says a token will be there; absent when waiting for a slot (policy backoff). */
  retryAfterMs?: number;
}

/** What one key's lock allows: `slots` new holders (Infinity without a concurrency limit), and the rate bucket. */
interface Allowance {
  slots: number;
  tokens: number;
  spend(claimed: number): Promise<void>;
  /** When the n-th (0-based) message deferred for want of a token can expect one. */
  tokenDelayMs(n: number): number | undefined;
}

async function allowance(client: pg.PoolClient, limits: TaskLimits, limitKey: string): Promise<Allowance> {
  await lockLimitKey(client, limitKey);
  const slots = limits.limit === undefined ? Infinity : Math.max(0, limits.limit - (await countLimitHolders(client, limitKey)));
  const { perSecond } = limits;
  if (perSecond === undefined) return { slots, tokens: Infinity, spend: () => Promise.resolve(), tokenDelayMs: () => undefined };
  const tokens = await refillRateBucket(client, limitKey, perSecond, Math.max(1, perSecond));
  let left = tokens;
  return {
    slots,
    tokens: Math.floor(tokens + 1e-9),
    spend: async (claimed) => {
      left = tokens - claimed;
      await spendRateTokens(client, limitKey, claimed);
    },
    // Staggered: the n-th waiting message is due when the bucket has refilled n + 1 tokens.
    tokenDelayMs: (n) => Math.max(0, Math.ceil(((n + 1 - left) / perSecond) * 1000)),
  };
}

/**
 * How long after a deferral a slot key counts as binding: its batches are counted before they are
 * claimed. Longer than a deferral's first backoff (1 s), so a key whose deferred messages keep
 * coming back stays on the locked way while they do.
 */
const BINDING_KEY_MS = 2_000;

/** Why a message waits for a slot. */
function slotsTaken(limit: number | undefined, limitKey: string): string {
  return `all ${limit} slot(s) of ${limitKey} are taken`;
}

/** A message can claim its task: QUEUED one attempt below, or PROCESSING at its attempt with an expired lease. */
function candidate(state: LimitedTaskState | undefined, attempt: number): 'fresh' | 'reclaim' | undefined {
  if (!state?.job_ready) return undefined;
  if (state.status === 'QUEUED' && state.attempt === attempt - 1) return 'fresh';
  if (state.status === 'PROCESSING' && state.attempt === attempt && state.lease_expired) return 'reclaim';
  return undefined;
}

type ConcurrencyOutcome =
  | { kind: 'claimed'; task: ClaimedTask }
  | { kind: 'deferred'; limitKey: string; limit: number }
  | { kind: 'reclaim'; limitKey: string }
  /** Task gone, a duplicate, its job not at its stage, or taken first by another claim: the caller classifies it. */
  | { kind: 'undecided' };

/**
 * Claims under concurrency limits alone, from every batch this process handles at once, in one call
 * (claimLimitedBatch): each slot key's lock is taken once per call, not once per batch. That lock
 * serialises the claims of a key across all instances, so the fewer calls pass through it, the less
 * each one waits. Measured with 4 instances of 4 batches each (`npm run bench:limits`, with
 * pg_stat_statements): a limit that never binds spent 4.6 of its claim's 6.1 ms waiting for the lock.
 */
export class ConcurrencyClaims {
  // One item per batch, not per request: a promise per task was a measurable part of what a limit
  // that never binds cost on the Node side.
  private readonly group = new GroupCommitter<readonly LimitedBatchRequest[], ConcurrencyOutcome[]>((batches) => this.claimAll(batches));
  constructor(
    private readonly pool: pg.Pool,
    /** The claiming host, recorded on each task it claims. */
    private readonly workerId: string | null,
    /**
     * This process's deferrals by slot key (its task runner's). A batch of one key is claimed first
     * and counted after (028_claim_before_count.sql), cheapest while the limit does not bind; a key
     * that deferred a moment ago binds, so its batches are sent the locked way (counted first)
     * rather than claimed and then undone.
     */
    private readonly deferrals: RecentDeferrals,
  ) {}

  /** The outcomes of a batch's requests, in their order. */
  claim(requests: readonly LimitedBatchRequest[]): Promise<ConcurrencyOutcome[]> {
    return requests.length === 0 ? Promise.resolve([]) : this.group.add(requests);
  }

  private async claimAll(batches: ReadonlyArray<readonly LimitedBatchRequest[]>): Promise<Map<readonly LimitedBatchRequest[], ConcurrencyOutcome[]>> {
    const now = Date.now();
    const requests = batches.flat();
    // In task-id order, the order every multi-row task lock in the engine takes (the fast path
    // claims them as given). A key that deferred a moment ago goes the locked way.
    const input = requests
      .map((request) =>
        request.singleKey !== null && this.deferrals.within(request.singleKey, BINDING_KEY_MS, now) ? { ...request, singleKey: null } : request,
      )
      .sort((a, b) => (a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : 0));
    // Retried as any claim is: one whose answer was lost with its connection holds its tasks
    // until their leases expire, and the janitor gives them back (a lease loss, not an attempt).
    const batch = await retryTransient(() => claimLimitedBatch(this.pool, input, this.workerId));
    for (const { limitKey } of batch.deferred) this.deferrals.note(limitKey, now);
    // Two batches may carry messages of the same task (a redelivery), decided once in SQL: the
    // first request of the task (in batch order) claims or re-claims it and the others are left
    // undecided (the caller finds them duplicates); a deferral defers them all. One pass over the
    // requests, with a map per outcome: this runs for every limited task.
    const claimed = new Map<string, ConcurrencyOutcome>();
    for (const task of batch.claimed) claimed.set(task.task_id, { kind: 'claimed', task });
    for (const { taskId, limitKey } of batch.reclaim) claimed.set(taskId, { kind: 'reclaim', limitKey });
    const deferred = new Map<string, ConcurrencyOutcome>();
    for (const { taskId, limitKey, limit } of batch.deferred) deferred.set(taskId, { kind: 'deferred', limitKey, limit });
    const undecided: ConcurrencyOutcome = { kind: 'undecided' };
    const outcomeOf = (request: LimitedBatchRequest): ConcurrencyOutcome => {
      const outcome = claimed.get(request.taskId);
      if (outcome === undefined) return deferred.get(request.taskId) ?? undecided;
      // Taken by this request: a later request of the same task finds it undecided.
      claimed.delete(request.taskId);
      return outcome;
    };
    return new Map(batches.map((requests) => [requests, requests.map(outcomeOf)]));
  }
}

/**
 * Claims what the limits allow of these task messages. A message not claimed and not deferred
 * (duplicate, task gone, job not running that stage) is left for the caller to classify.
 */
export async function claimLimitedTasks(
  pool: pg.Pool,
  unitOfWork: UnitOfWork,
  registry: Registry,
  requests: readonly LimitedClaimRequest[],
  /** Claims are pushed here as each key's unit of work commits: if a later key throws, the caller still knows what to give back. */
  claimed: ClaimedTask[],
  /** The claiming host, recorded on each task it claims (the workers view counts them). */
  workerId: string | null,
  /** This process's claims under concurrency limits alone, which concurrent batches share (they carry the same workerId). */
  concurrencyClaims: ConcurrencyClaims,
): Promise<Map<string, Deferral>> {
  const deferred = new Map<string, Deferral>();
  if (requests.length === 0) return deferred;
  const groups = new Map<string, { limits: TaskLimits; fresh: LimitedClaimRequest[]; reclaim: LimitedClaimRequest[] }>();
  const addTo = (limitKey: string, limits: TaskLimits, kind: 'fresh' | 'reclaim', request: LimitedClaimRequest): void => {
    const group = groups.get(limitKey) ?? { limits, fresh: [], reclaim: [] };
    group[kind].push(request);
    groups.set(limitKey, group);
  };
  // A concurrency limit alone (the common case): the whole batch, with those of the other batches
  // this process is claiming at the same moment, is read, locked key by key, counted and claimed in
  // one round trip (026_claim_limited_batch.sql), as an unlimited claim is.
  // A rate bucket, or a re-claim of a lost lease, takes a unit of work per key below.
  // One pass sorts the requests by their limits: this runs for every limited task.
  const byConcurrency: LimitedClaimRequest[] = [];
  const batchRequests: LimitedBatchRequest[] = [];
  const rated: LimitedClaimRequest[] = [];
  for (const request of requests) {
    const limits = registry.limitsOf(request.taskType);
    if (limits?.perSecond !== undefined) rated.push(request);
    else if (limits?.limit !== undefined) {
      const scopeKey = `${limits.scope}:`;
      byConcurrency.push(request);
      batchRequests.push({
        taskId: request.taskId,
        attempt: request.attempt,
        leaseSeconds: request.leaseSeconds,
        limit: limits.limit,
        defaultKey: scopeKey,
        singleKey: limits.keyed ? null : scopeKey,
      });
    }
  }
  const outcomes = await concurrencyClaims.claim(batchRequests);
  outcomes.forEach((outcome, i) => {
    const request = byConcurrency[i] as LimitedClaimRequest;
    if (outcome.kind === 'claimed') claimed.push(outcome.task);
    else if (outcome.kind === 'deferred') deferred.set(request.taskId, { reason: slotsTaken(outcome.limit, outcome.limitKey), limitKey: outcome.limitKey });
    else if (outcome.kind === 'reclaim') addTo(outcome.limitKey, registry.limitsOf(request.taskType) as TaskLimits, 'reclaim', request);
  });
  const states = new Map(
    rated.length === 0
      ? []
      : (
          await describeLimitedTasks(
            pool,
            rated.map((r) => r.taskId),
          )
        ).map((s) => [s.task_id, s]),
  );
  for (const request of rated) {
    const limits = registry.limitsOf(request.taskType);
    const state = states.get(request.taskId);
    const kind = candidate(state, request.attempt);
    if (!limits || !state || !kind) continue;
    addTo(state.limit_key ?? `${limits.scope}:`, limits, kind, request);
  }
  for (const limitKey of [...groups.keys()].sort()) {
    const group = groups.get(limitKey);
    if (!group) continue;
    // Full already (read without the lock): defer without queueing on the key's lock, where a
    // backlog of waiting messages would delay the claims that can start. A stale read only defers
    // a message that could have started; it never admits one too many (that takes the lock).
    if (group.limits.limit !== undefined && group.reclaim.length === 0 && (await countLimitHolders(pool, limitKey)) >= group.limits.limit) {
      for (const request of group.fresh) deferred.set(request.taskId, { reason: slotsTaken(group.limits.limit, limitKey), limitKey });
      const waiting = group.fresh.map((request) => request.taskId);
      await commit(unitOfWork, async ({ client }) => ({ value: await markSlotWaiters(client, limitKey, waiting) }));
      continue;
    }
    const rows = await commit(unitOfWork, async ({ client }) => {
      const allow = await allowance(client, group.limits, limitKey);
      // A re-claim after a lost lease already holds its slot (the task never left PROCESSING);
      // it starts the handler again, so it needs a token.
      const reclaim = group.reclaim.slice(0, allow.tokens);
      const fresh = group.fresh.slice(0, Math.max(0, Math.min(allow.slots, allow.tokens - reclaim.length)));
      const chosen = [...reclaim, ...fresh];
      const got = await claimTasks(
        client,
        chosen.map((r) => ({ taskId: r.taskId, attempt: r.attempt, limitKey })),
        chosen.map((r) => r.leaseSeconds),
        workerId,
      );
      await allow.spend(got.length);
      const waiting = [...group.reclaim.slice(reclaim.length), ...group.fresh.slice(fresh.length)];
      // Which limit held them back: the tokens (then a token's due time is known) or the slots.
      const byRate = reclaim.length < group.reclaim.length || allow.tokens - reclaim.length < allow.slots;
      waiting.forEach((request, n) => {
        const retryAfterMs = byRate ? allow.tokenDelayMs(n) : undefined;
        const reason = byRate ? `rate limit of ${limitKey} (${group.limits.perSecond}/s) reached` : slotsTaken(group.limits.limit, limitKey);
        deferred.set(request.taskId, { reason, limitKey, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
      });
      // Those waiting for a slot are woken when one is freed; those waiting for a token know when it comes.
      if (!byRate)
        await markSlotWaiters(
          client,
          limitKey,
          waiting.map((request) => request.taskId),
        );
      return { value: got };
    });
    claimed.push(...rows);
  }
  return deferred;
}

/**
 * A remote worker's claim of a limited task type: the keys with work waiting, each claimed under
 * its lock up to what is free, oldest first within a key, until `limit` tasks are claimed.
 */
export async function claimLimitedRemoteTasks(
  pool: pg.Pool,
  unitOfWork: UnitOfWork,
  request: { taskType: string; limits: TaskLimits; leaseSeconds: number; limit: number; workerId: string },
): Promise<RemoteClaim[]> {
  const defaultKey = `${request.limits.scope}:`;
  const claimed: RemoteClaim[] = [];
  // Bounded: a claim looks at the first keys with work; the next claim sees the same keys again
  // only if they still have work, so no key waits behind more than this many others per claim.
  for (const limitKey of await queuedRemoteLimitKeys(pool, request.taskType, defaultKey, 100)) {
    const wanted = request.limit - claimed.length;
    if (wanted <= 0) break;
    claimed.push(
      ...(await commit(unitOfWork, async ({ client }) => {
        const allow = await allowance(client, request.limits, limitKey);
        const limit = Math.min(wanted, allow.slots, allow.tokens);
        const rows = await claimRemoteTasksOfKey(client, {
          taskType: request.taskType,
          limitKey,
          defaultKey,
          leaseSeconds: request.leaseSeconds,
          limit,
          workerId: request.workerId,
        });
        await allow.spend(rows.length);
        return { value: rows };
      })),
    );
  }
  return claimed;
}

/**
 * A slot of the key was freed here (a task of it settled): its oldest waiting tasks get a message
 * now, instead of waiting out their deferral backoff, which would leave the slot idle meanwhile.
 * Best effort by design: the deferred messages still come back on their own, so a wake-up lost
 * (or beaten to the slot) delays a task, never strands it; the woken task's deferred copy later
 * finds it done and is acknowledged as a duplicate. The resend tag keeps duplicate detection
 * from dropping the wake-up as a copy of the task's first message.
 */
export async function wakeWaitingTasks(unitOfWork: UnitOfWork, limitKey: string, freed: number): Promise<number> {
  return commit(unitOfWork, async ({ client }) => {
    const waiting = await waitingTasksOfKey(client, limitKey, freed);
    const resend = `w${randomUUID().slice(0, 8)}`;
    return {
      value: waiting.length,
      intents: waiting.map((task) => ({
        kind: 'task' as const,
        jobId: task.job_id,
        message: { taskId: task.task_id, jobId: task.job_id, stage: task.stage, taskType: task.task_type, attempt: task.attempt + 1, resend },
      })),
    };
  });
}

/**
 * Corrects the slot tallies that disagree with the running tasks (none should: every known way in
 * and out of PROCESSING keeps them in step, core/state/limit-slots-sql.ts), then folds the tallies
 * of exited sessions and those at 0 (foldSlotTallies). A recount another janitor is making is not
 * repeated. Returns what the recount corrected.
 */
export async function recountSlots(unitOfWork: UnitOfWork, limit: number): Promise<SlotRecount> {
  const recount = await commit(unitOfWork, async ({ client }) => ({
    value: (await lockSlotRecount(client)) ? await reconcileSlotTallies(client) : NOTHING_RECOUNTED,
  }));
  await commit(unitOfWork, async ({ client }) => ({ value: await foldSlotTallies(client, limit) }));
  return recount;
}
