import type { Logger } from '../logger';
import { coerceError } from '../errors';
import { MessageLockLostError, type InProcessQueue, type ReceivedMessage } from './in-process-queue';

export type Settlement = { action: 'complete' } | { action: 'deadLetter'; reason: string; description: string };

/** Handles a batch; returns one settlement per message, in order. Throwing abandons the batch. */
export type BatchHandler = (messages: ReceivedMessage[]) => Promise<Settlement[]>;

export interface ConsumerOptions {
  maxBatchSize: number;
  /** Batches in flight at once. */
  concurrency: number;
  /** Renew locks while the handler runs, as the Functions host does (maxAutoLockRenewalDuration). */
  autoRenewLock: boolean;
}

/**
 * Pulls batches from an in-process queue like the Service Bus trigger does: bounded concurrency,
 * settle on return, abandon on throw so the message is redelivered (and dead-lettered at the
 * max delivery count).
 */
export class QueueConsumer {
  private inFlight = 0;
  private stopped = false;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly queue: InProcessQueue,
    private readonly handler: BatchHandler,
    private readonly options: ConsumerOptions,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = queue.onActivity(() => this.pump());
    this.pump();
  }

  /** Nothing in flight here and nothing visible in the queue. */
  isIdle(): boolean {
    return this.inFlight === 0 && this.queue.visibleCount === 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    while (this.inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 5));
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
    let settlements: Settlement[] | undefined;
    let failure: Error | undefined;
    try {
      settlements = await this.handler(batch);
    } catch (error) {
      failure = coerceError(error);
    } finally {
      if (renewal) clearInterval(renewal);
    }
    for (const [index, message] of batch.entries()) {
      const settlement = settlements?.[index];
      this.settle(message, settlement, failure);
    }
  }

  private settle(message: ReceivedMessage, settlement: Settlement | undefined, failure: Error | undefined): void {
    try {
      if (failure || !settlement) {
        this.logger.warn('message abandoned for redelivery', {
          queue: this.queue.name,
          messageId: message.messageId,
          deliveryCount: message.deliveryCount,
          error: failure?.message ?? 'handler returned no settlement',
          errorType: failure?.name,
        });
        this.queue.abandon(message);
      } else if (settlement.action === 'complete') {
        this.queue.complete(message);
      } else {
        this.logger.error('message dead-lettered', {
          queue: this.queue.name,
          messageId: message.messageId,
          reason: settlement.reason,
          description: settlement.description,
        });
        this.queue.deadLetter(message, settlement.reason, settlement.description);
      }
    } catch (error) {
      if (!(error instanceof MessageLockLostError)) throw error;
      // The lock expired while the handler ran: the queue already made the message visible
      // again, exactly as Service Bus does. The redelivery is handled as a duplicate.
      this.logger.warn('message lock lost before settlement; it was redelivered', {
        queue: this.queue.name,
        messageId: message.messageId,
      });
    }
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
