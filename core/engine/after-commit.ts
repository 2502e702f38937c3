import { eventResult, jobEventTypeFor, type ErrorShape, type JobEvent } from '../../models';
import type { Queryable } from '../db/pool';
import type { Logger } from '../logger';
import type { Payloads } from '../payloads/payloads';
import type { Registry } from '../registry';
import { findJobIdentities } from '../state/jobs-store';
import type { OutboxIntent } from './outbox';
import type { StageCheck } from './stage-check';

/** What engine steps read inside a transaction: the definitions and the log. Nothing is pushed into it. */
export interface EngineContext {
  registry: Registry;
  logger: Logger;
  /** Where large values go and come from (core/payloads); absent: every value inline, up to the default cap. */
  payloads?: Payloads;
}

/** A handler running in this process whose task a transaction stopped (cancel, deadline, fail fast). */
export interface RunningTaskAbort {
  taskId: string;
  reason: Error;
}

/**
 * A state change to report once it is committed (never for a rollback): a telemetry event, the
 * stage-duration metric, and for the job's own transitions and completed stages its job event
 * (core/engine/job-events.ts).
 */
export interface Transition {
  name: 'JobTransition' | 'StageCompleted' | 'StageStarted';
  attributes: Record<string, string | number>;
  stageDurationMs?: number;
  /** What a terminal job transition ended with: published in its job event (models/job-event.ts). */
  outcome?: { result?: unknown; error?: ErrorShape | null; resultBytes?: number };
}

/**
 * What a transaction's work leaves to be done once it commits, returned as data by every engine
 * step and combined on the way up: the messages its change needs (written to the outbox in the same
 * transaction), the transitions to report, the handlers to abort, and the stages whose counters it
 * moved to their end. The unit of work carries out the first three; the engine runs the stage
 * checks after the commit (core/engine/commit.ts).
 */
export interface AfterCommit {
  readonly intents: readonly OutboxIntent[];
  readonly transitions: readonly Transition[];
  readonly aborts: readonly RunningTaskAbort[];
  readonly stageChecks: readonly StageCheck[];
}

export const NOTHING_AFTER_COMMIT: AfterCommit = Object.freeze({ intents: [], transitions: [], aborts: [], stageChecks: [] });

/** Several steps' after-commit work as one, in order. */
export function afterCommit(...parts: ReadonlyArray<Partial<AfterCommit> | undefined>): AfterCommit {
  const present = parts.filter((part): part is Partial<AfterCommit> => part !== undefined);
  if (present.length === 0) return NOTHING_AFTER_COMMIT;
  return {
    intents: present.flatMap((part) => part.intents ?? []),
    transitions: present.flatMap((part) => part.transitions ?? []),
    aborts: present.flatMap((part) => part.aborts ?? []),
    stageChecks: present.flatMap((part) => part.stageChecks ?? []),
  };
}

/**
 * The job events a committed unit of work publishes: every terminal job transition and every
 * completed stage, derived from the same transition list telemetry reports, so no path can make
 * a transition without its event. They go into the outbox in the transition's own transaction:
 * never lost, never published for a change that rolled back.
 */
export function jobEventIntents(transitions: readonly Transition[], at: Date): OutboxIntent[] {
  const intents: OutboxIntent[] = [];
  for (const transition of transitions) {
    const event = toJobEvent(transition, at.toISOString());
    if (event) intents.push({ kind: 'event', jobId: event.jobId, event });
  }
  return intents;
}

/**
 * Job events carry the job's name, creator and labels, so a subscriber can route by them without
 * reading the job. The transitions that make events know only ids and statuses, and are made in
 * many places; the identity is read here instead, once per transaction that publishes events (a
 * job ending or a stage completing, never per task), inside that transaction, by primary key.
 */
export async function withJobIdentity(db: Queryable, intents: readonly OutboxIntent[]): Promise<OutboxIntent[]> {
  const jobIds = intents.flatMap((intent) => (intent.kind === 'event' ? [intent.jobId] : []));
  if (jobIds.length === 0) return [...intents];
  const identities = new Map((await findJobIdentities(db, jobIds)).map((row) => [row.job_id, row]));
  return intents.map((intent) => {
    const identity = intent.kind === 'event' ? identities.get(intent.jobId) : undefined;
    if (intent.kind !== 'event' || !identity) return intent;
    // Only what the job has: an event of a job without them is as small as before.
    const event: JobEvent = {
      ...intent.event,
      ...(identity.name === null ? {} : { name: identity.name }),
      ...(identity.created_by === null ? {} : { createdBy: identity.created_by }),
      ...(Object.keys(identity.labels).length === 0 ? {} : { labels: identity.labels }),
    };
    return { ...intent, event };
  });
}

function toJobEvent(transition: Transition, at: string): JobEvent | undefined {
  const { attributes } = transition;
  const base = { jobId: String(attributes.jobId), jobType: String(attributes.jobType), stage: Number(attributes.stage), at };
  if (transition.name === 'StageCompleted') {
    return { ...base, type: 'StageCompleted', status: 'COMPLETED', ...(attributes.stageName === undefined ? {} : { stageName: String(attributes.stageName) }) };
  }
  if (transition.name !== 'JobTransition') return undefined;
  const type = jobEventTypeFor(String(attributes.to));
  if (!type) return undefined;
  const error = transition.outcome?.error ?? undefined;
  // A result in the payload store is not copied into the event: its size says it exists.
  const result = transition.outcome?.resultBytes === undefined ? eventResult(transition.outcome?.result) : { resultBytes: transition.outcome.resultBytes };
  return { ...base, type, status: String(attributes.to), ...result, ...(error ? { error } : {}) };
}
