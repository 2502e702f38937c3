/**
 * A consumer of job events that chains a second job when the first completes: every COMPLETED
 * hello_world job starts a word_frequencies job. Two ways to run it, the same logic:
 *
 * - In process (`coremachine dev`, tests): `chainOnComplete(machine)` subscribes with
 *   `machine.events.subscribe`, which sees every event the engine publishes.
 * - In Azure: a Service Bus trigger on the `coremachine-events` topic's `default` subscription
 *   (`registerChainTrigger()` from your own Functions app's entry file), calling the same
 *   `nextJobFor` and submitting with the CoreMachine HTTP API or the submissions queue.
 *
 * Delivery is at-least-once on both paths, so the follow-up job is submitted with an idempotency
 * key derived from the first job's id: a redelivered event makes the same job, not a second one.
 */
import { JobEvent } from '../models';

/** Which job (if any) a finished job leads to. Pure: the one place the chaining rule lives. */
export function nextJobFor(event: JobEvent): { jobType: string; parameters: unknown; idempotencyKey: string } | undefined {
  if (event.type !== 'JobCompleted' || event.jobType !== 'hello_world') return undefined;
  return { jobType: 'word_frequencies', parameters: { topK: 3 }, idempotencyKey: `after:${event.jobId}` };
}

/** What the in-process path needs from the engine (CoreMachine has both). */
export interface EventSource {
  events: { subscribe(handler: (event: JobEvent) => Promise<void>): () => void };
  submitJob(jobType: string, parameters: unknown, options: { idempotencyKey: string }): Promise<unknown>;
}

/** Subscribes; returns the function that unsubscribes. */
export function chainOnComplete(machine: EventSource): () => void {
  return machine.events.subscribe(async (event) => {
    const next = nextJobFor(event);
    if (next) await machine.submitJob(next.jobType, next.parameters, { idempotencyKey: next.idempotencyKey });
  });
}

/**
 * The Azure variant, for a Functions app of your own (not registered by CoreMachine's app): the
 * topic subscription delivers each event; a throw abandons the message so Service Bus redelivers it.
 */
export async function registerChainTrigger(submit: (jobType: string, parameters: unknown, idempotencyKey: string) => Promise<void>): Promise<void> {
  const { app } = await import('@azure/functions');
  app.serviceBusTopic('chainOnComplete', {
    topicName: 'coremachine-events',
    subscriptionName: 'default',
    connection: 'ServiceBusConnection',
    handler: async (message) => {
      const next = nextJobFor(JobEvent.parse(message));
      if (next) await submit(next.jobType, next.parameters, next.idempotencyKey);
    },
  });
}
