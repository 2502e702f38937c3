import { errorToShape } from '../errors';
import type { Logger } from '../logger';
import type { InProcessQueue } from './in-process-queue';

/** A dead-lettered message as the transport hands it on: where it was, what it said, and why. */
export interface DeadLetterInput {
  queue: string;
  messageId: string;
  body: unknown;
  reason: string;
  description: string;
}

/**
 * What this consumer needs from whoever owns the state (the engine): settle one dead letter,
 * resolving once the outcome is committed. Declared here so the transport layer does not import
 * the engine; CoreMachine satisfies it structurally.
 */
export interface DeadLetterSink {
  processDeadLetter(letter: DeadLetterInput): Promise<unknown>;
}

/**
 * Reads a queue's dead letters in order and hands each to the engine, which fails what the message
 * pointed at. A letter is only passed over once the engine committed it; on error it stays first
 * in line and is tried again on the next activity, so none is lost.
 */
export class DeadLetterConsumer {
  private next = 0;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly unsubscribe: () => void;
  private readonly retryTimer: NodeJS.Timeout;

  constructor(
    private readonly queue: InProcessQueue,
    private readonly machine: DeadLetterSink,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = queue.onActivity(() => this.kick());
    this.retryTimer = setInterval(() => this.kick(), 1000);
    this.retryTimer.unref();
  }

  isIdle(): boolean {
    return this.running === undefined && this.next >= this.queue.deadLetters.length;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    clearInterval(this.retryTimer);
    await this.running;
  }

  private kick(): void {
    if (this.stopped || this.running || this.next >= this.queue.deadLetters.length) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (!this.stopped && this.next < this.queue.deadLetters.length) {
      const letter = this.queue.deadLetters[this.next];
      if (!letter) return;
      // In Azure each dead letter is one invocation of a dead-letter trigger (cardinality one): a
      // receive from the sub-queue, then a complete, or an abandon when the engine could not record it.
      this.queue.operations.add('receive');
      this.queue.operations.add('execution');
      try {
        await this.machine.processDeadLetter({
          queue: this.queue.name,
          messageId: letter.messageId,
          body: letter.body,
          reason: letter.deadLetterReason,
          description: letter.deadLetterErrorDescription,
        });
        this.next++;
        this.queue.operations.add('complete');
      } catch (error) {
        this.queue.operations.add('abandon');
        this.logger.error('dead letter not processed yet; will retry', { queue: this.queue.name, messageId: letter.messageId, error: errorToShape(error) });
        return;
      }
    }
  }
}
