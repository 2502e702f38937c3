/**
 * The cloud's billable units, counted where they happen: Service Bus operations by kind and
 * Functions executions. One counter per transport; every host that moves a message for that
 * transport adds to it (the in-process queues and consumers, the Service Bus sender, the Functions
 * triggers), so `Transport.operations()` answers "what did this work cost in Azure units?".
 *
 * What one unit is, and why:
 * - Counts are PHYSICAL: a Service Bus message is one send, one receive and one complete however many
 *   task messages it packs, because that is what the broker sees.
 * - A batch counts per message, not per call: Standard tier throttling charges "1 credit per message"
 *   for data operations (Send, Receive, Peek) and counts "any operations performed by the sender or
 *   receiver client applications" against the credits
 *   (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-throttling), and a batch of k
 *   messages is k sends and, settled, k completes. Billing counts "any API call" an operation
 *   (https://azure.microsoft.com/pricing/details/service-bus/); counting per message is the upper
 *   bound of the two and the one throttling enforces.
 * - A receive that returns nothing is not counted: the Functions host keeps an AMQP receive link open
 *   with credit, whose idle polling the app cannot observe.
 * - A dead letter made by Service Bus itself (max delivery count, expiry) is no client operation and
 *   is not counted; `deadLetter` counts what a host asked for.
 * - One Functions execution is one trigger invocation: a batch for a cardinality-many trigger, one
 *   message for cardinality one; in process, one batch handed to a consumer's handler.
 */
export const SERVICE_BUS_OPERATIONS = ['send', 'receive', 'complete', 'abandon', 'renew', 'schedule', 'deadLetter'] as const;
export type ServiceBusOperation = (typeof SERVICE_BUS_OPERATIONS)[number];
export type CountedUnit = ServiceBusOperation | 'execution';

export interface OperationCountsSnapshot {
  send: number;
  receive: number;
  complete: number;
  abandon: number;
  renew: number;
  /** Scheduled sends (a retry's delay, a reschedule after a transient fault). */
  schedule: number;
  deadLetter: number;
  /** The seven Service Bus operations together. */
  total: number;
  /** Functions executions (trigger invocations). */
  executions: number;
  /**
   * Bytes of the messages sent and scheduled, and of those received: what a Premium messaging unit's
   * throughput is measured in. In process: body JSON + messageId + application properties (no AMQP
   * framing); from the Service Bus SDK: the encoded batch size.
   */
  sentBytes: number;
  receivedBytes: number;
}

/** A counter per transport: hosts `add`, readers take a `snapshot` (and subtract two for a window). */
export class OperationCounts {
  private readonly counts = new Map<CountedUnit, number>();
  private bytes = { sent: 0, received: 0 };

  add(kind: CountedUnit, n = 1): void {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`operation count must be a non-negative integer, got ${n} for ${kind}`);
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + n);
  }

  addBytes(direction: 'sent' | 'received', n: number): void {
    this.bytes[direction] += n;
  }

  snapshot(): OperationCountsSnapshot {
    const get = (kind: CountedUnit) => this.counts.get(kind) ?? 0;
    const operations = Object.fromEntries(SERVICE_BUS_OPERATIONS.map((kind) => [kind, get(kind)])) as Record<ServiceBusOperation, number>;
    return {
      ...operations,
      total: SERVICE_BUS_OPERATIONS.reduce((sum, kind) => sum + get(kind), 0),
      executions: get('execution'),
      sentBytes: this.bytes.sent,
      receivedBytes: this.bytes.received,
    };
  }
}

/** What happened between two snapshots of the same counter. */
export function countsBetween(before: OperationCountsSnapshot, after: OperationCountsSnapshot): OperationCountsSnapshot {
  const delta = {} as OperationCountsSnapshot;
  for (const key of Object.keys(after) as Array<keyof OperationCountsSnapshot>) delta[key] = after[key] - before[key];
  return delta;
}

/** One trigger invocation (a Functions execution) that the host handed `messages` received messages. */
export function countInvocation(counts: OperationCounts | undefined, messages: number): void {
  counts?.add('execution');
  counts?.add('receive', messages);
}
