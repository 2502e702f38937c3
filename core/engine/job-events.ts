import { eventResult, jobEventTypeFor, type JobEvent } from '../../models';
import type { OutboxIntent } from './outbox';
import type { Transition } from './after-commit';

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
  return { ...base, type, status: String(attributes.to), ...eventResult(transition.outcome?.result), ...(error ? { error } : {}) };
}
