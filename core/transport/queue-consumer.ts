import type { Logger } from '../logger';
import { decideSettlement, DEFAULT_SETTLEMENT_POLICY, RESCHEDULES_PROPERTY, reschedulesOf, rescheduledMessageId, type HandlingResult, type Settlement, type SettlementPolicy } from '../message-settlement';
import { MessageLockLostError, type InProcessQueue, type ReceivedMessage } from './in-process-queue';

/**
 * Handles a batch; returns what the engine made of each message, in order. Throwing means the
 * same error for every message of the batch. Either way core/settlement.ts decides what to do.
 */
export type BatchHandler = (messages: ReceivedMessage[]) => Promise<HandlingResult[]>;

export interface ConsumerOptions {
  maxBatchSize: number;
  /** Batches in flight at once. */
  concurrency: number;
  /** Renew locks while the handler runs, as the Functions host does (maxAutoLockRenewalDuration). */
  autoRenewLock: boolean;
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
      const batch = this.queue.receive(this.options.maxBatchSize);
      if (batch.length === 0) break;
      this.inFlight++;
      void this.handle(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async handle(batch: ReceivedMessage[]): Promise<void> {
    const renewal = this.options.autoRenewLock ? this.startRenewal(batch) : undefined;
    let results: HandlingResult[];
    try {
      results = await this.handler(batch);
    } catch (error) {
      results = batch.map(() => ({ ok: false, error }));
    } finally {
      if (renewal) clearInterval(renewal);
    }
    for (const [index, message] of batch.entries()) {
      const result: HandlingResult = results[index] ?? { ok: false, error: new Error('handler returned no result for this message') };
      const delivery = { deliveryCount: message.deliveryCount, reschedules: reschedulesOf(message.applicationProperties) };
      this.settle(message, decideSettlement(result, delivery, this.policy));
    }
  }

  private settle(message: ReceivedMessage, settlement: Settlement): void {
    try {
      switch (settlement.action) {
        case 'complete':
          this.queue.complete(message);
          return;
        case 'abandon':
          this.logger.warn('message abandoned for redelivery', { ...this.where(message), error: settlement.reason });
          this.queue.abandon(message);
          return;
        case 'deadLetter':
          this.logger.error('message dead-lettered', { ...this.where(message), reason: settlement.reason, description: settlement.description });
          this.queue.deadLetter(message, settlement.reason, settlement.description);
          return;
        case 'reschedule': {
          const reschedules = reschedulesOf(message.applicationProperties) + 1;
          // A deferral (a limit reached) is the limit working, not a fault: debug, not warn.
          if (settlement.deferred) this.logger.debug('message deferred by a limit', { ...this.where(message), delayMs: settlement.delayMs, reschedules, reason: settlement.reason });
          else this.logger.warn('message rescheduled after a transient fault', { ...this.where(message), delayMs: settlement.delayMs, reschedules, error: settlement.reason });
          // The copy first: were the process to die in between, a duplicate is harmless, a loss is not.
          this.queue.send(
            [{ messageId: rescheduledMessageId(message.messageId, reschedules), body: message.body, applicationProperties: { ...message.applicationProperties, [RESCHEDULES_PROPERTY]: reschedules } }],
            new Date(Date.now() + settlement.delayMs),
          );
          this.queue.complete(message);
          return;
        }
      }
    } catch (error) {
      if (!(error instanceof MessageLockLostError)) throw error;
      // The lock expired while the handler ran: the queue already made the message visible
      // again, exactly as Service Bus does. The redelivery is handled as a duplicate.
      this.logger.warn('message lock lost before settlement; it was redelivered', this.where(message));
    }
  }

  /** Where a message stands, for the log line of a settlement other than complete. */
  private where(message: ReceivedMessage): { queue: string; messageId: string; deliveryCount: number } {
    return { queue: this.queue.name, messageId: message.messageId, deliveryCount: message.deliveryCount };
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
