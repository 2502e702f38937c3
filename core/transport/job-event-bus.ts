import { jobEventMessageId, type JobEvent } from '../../models';

export type JobEventHandler = (event: JobEvent, meta: { messageId: string }) => Promise<void> | void;

/**
 * In-process subscribers to job events: what a topic subscription is in Azure. Delivery is
 * at-least-once, like the topic's: `publish` resolves only when every subscriber has taken every
 * event, and a subscriber that throws makes it reject — the outbox row stays and the event is
 * published again later, so subscribers dedupe by `messageId` (deterministic per event).
 */
export class JobEventBus {
  private readonly handlers = new Set<JobEventHandler>();

  /** Returns the function that unsubscribes. */
  subscribe(handler: JobEventHandler): () => void {
    this.handlers.add(handler);
    return () => {
      this.handlers.delete(handler);
    };
  }

  async publish(events: readonly JobEvent[]): Promise<void> {
    const failures: unknown[] = [];
    for (const event of events) {
      const meta = { messageId: jobEventMessageId(event) };
      for (const handler of [...this.handlers]) {
        try {
          await handler(event, meta);
        } catch (error) {
          // Collected, not swallowed: the other subscribers still get the event, then publish fails.
          failures.push(error);
        }
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, `${failures.length} job event subscriber call(s) failed; the events will be published again`);
  }
}
