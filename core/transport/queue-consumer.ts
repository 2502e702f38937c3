import type { Logger } from '../logger';
import { DEFAULT_SETTLEMENT_POLICY, type HandlingResult, type SettlementPolicy } from '../message-settlement';
import { handlingBatch, settleBatch, type HeldMessage, type MessageHost } from './settle-batch';
import { singles, tasksIn, unpackTaskBatch } from './task-packing';
import { MessageLockLostError, type InProcessQueue, type ReceivedMessage } from './in-process-queue';

/**
 * Handles a batch; returns what the engine made of each message, in order. Throwing means the
 * same error for every message of the batch. Either way core/settlement.ts decides what to do.
 * With `unpackTasks`, the handler gets each task of a pack as a message of its own.
 */
export type BatchHandler = (messages: HeldMessage[]) => Promise<HandlingResult[]>;

export interface ConsumerOptions {
  maxBatchSize: number;
  /** Batches in flight at once. */
  concurrency: number;
  /** Renew locks while the handler runs, as the Functions host does (maxAutoLockRenewalDuration). */
  autoRenewLock: boolean;
  /**
   * The tasks queue: packs (core/transport/task-packing.ts) are handed to the handler task by task,
   * and a batch holds at most maxBatchSize tasks (at least one message), not maxBatchSize packs.
   */
  unpackTasks?: boolean;
  /** Reschedule delays; the max delivery count always comes from the queue. */
  settlement?: Partial<Omit<SettlementPolicy, 'maxDeliveryCount'>>;
}

/**
 * Pulls batches from an in-process queue like the Service Bus trigger does: bounded concurrency,
 * then complete, abandon (redelivered), dead-letter or reschedule each message as the settlement
 * policy says.
 */
export class QueueConsumer {
  private inFlight = 0;
  private stopped = false;
  private readonly unsubscribe: () => void;
  private readonly policy: SettlementPolicy;

  constructor(
    private readonly queue: InProcessQueue,
    private readonly handler: BatchHandler,
    private readonly options: ConsumerOptions,
    private readonly logger: Logger,
  ) {
    this.policy = { ...DEFAULT_SETTLEMENT_POLICY, ...options.settlement, maxDeliveryCount: queue.options.maxDeliveryCount };
    this.unsubscribe = queue.onActivity(() => this.pump());
    this.pump();
  }

  /** Nothing in flight here, nothing visible in the queue and no source left to pull from. */
  isIdle(): boolean {
    return this.inFlight === 0 && this.queue.visibleCount === 0 && this.queue.pendingSources === 0;
  }

  /** Takes no more messages; batches already taken carry on. */
  halt(): void {
    this.stopped = true;
    this.unsubscribe();
  }

  /** Halts, then waits for the batches in flight, at most `timeoutMs` (a handler may ignore its abort). */
  async stop(timeoutMs = Infinity): Promise<void> {
    this.halt();
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < this.options.concurrency) {
      const batch = this.queue.receive(this.options.maxBatchSize, this.options.unpackTasks ? tasksIn : undefined);
      if (batch.length === 0) break;
      // One batch handed to the handler is what one invocation of a cardinality-many trigger is.
      this.queue.operations.add('execution');
      this.inFlight++;
      void this.handle(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async handle(batch: ReceivedMessage[]): Promise<void> {
    const renewal = this.options.autoRenewLock ? this.startRenewal(batch) : undefined;
    const held = batch.map(heldMessage);
    const unpacked = this.options.unpackTasks ? unpackTaskBatch(held) : singles(held);
    const results = await handlingBatch(unpacked.logical.length, () => (unpacked.logical.length === 0 ? Promise.resolve([]) : this.handler(unpacked.logical)));
    if (renewal) clearInterval(renewal);
    await settleBatch(inProcessHost(this.queue, batch, this.logger), unpacked, results, this.policy);
  }

  private startRenewal(batch: ReceivedMessage[]): NodeJS.Timeout {
    const every = Math.max(10, Math.floor(this.queue.options.lockDurationMs / 2));
    const timer = setInterval(() => {
      for (const message of batch) {
        try {
          this.queue.renewLock(message);
        } catch (error) {
          if (!(error instanceof MessageLockLostError)) throw error;
        }
      }
    }, every);
    timer.unref();
    return timer;
  }
}

/** A received in-process message as every host describes it. */
export function heldMessage(message: ReceivedMessage): HeldMessage {
  return {
    messageId: message.messageId,
    body: message.body,
    deliveryCount: message.deliveryCount,
    enqueuedTime: message.enqueuedTimeUtc,
    applicationProperties: message.applicationProperties ?? {},
    replyTo: message.replyTo,
    correlationId: message.correlationId,
  };
}

/** The in-process queue's side of settling a batch (core/transport/settle-batch.ts). */
export function inProcessHost(queue: InProcessQueue, batch: readonly ReceivedMessage[], logger: Logger): MessageHost {
  const message = (index: number) => batch[index] as ReceivedMessage;
  // The lock expired while the handler ran: the queue already made the message visible again,
  // exactly as Service Bus does, and its redelivery is handled as a duplicate. Nothing is lost.
  const settling = (index: number, settle: () => void): Promise<void> => {
    try {
      settle();
    } catch (error) {
      if (!(error instanceof MessageLockLostError)) throw error;
      logger.warn('message lock lost before settlement; it was redelivered', {
        queue: queue.name,
        messageId: message(index).messageId,
        deliveryCount: message(index).deliveryCount,
      });
    }
    return Promise.resolve();
  };
  return {
    queue: queue.name,
    logger,
    complete: (index) => settling(index, () => queue.complete(message(index))),
    abandonAll: async () => {
      for (const index of batch.keys()) await settling(index, () => queue.abandon(message(index)));
    },
    deadLetter: (index, reason, description) => settling(index, () => queue.deadLetter(message(index), reason, description)),
    sendCopy: (copy, at) => {
      queue.send([copy], at);
      return Promise.resolve();
    },
  };
}
