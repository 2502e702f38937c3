import { errorToShape } from './errors';
import type { CoreMachine } from './engine/core-machine';
import type { Logger } from './logger';
import type { InProcessTransport } from './transport/in-process-transport';
import { QueueConsumer } from './transport/queue-consumer';
import { handling, messageMetaOf, type HeldMessage } from './transport/settle-batch';
import type { HandlingResult, SettlementPolicy } from './message-settlement';
import { DeadLetterConsumer } from './transport/dead-letter-consumer';
import type { JanitorOptions } from './janitor';

/** After a drain, how long batches whose claims were given back get to record that they were fenced. */
const SETTLE_AFTER_DRAIN_MS = 2000;

export interface WorkerOptions {
  taskBatchSize: number;
  taskConcurrency: number;
  jobConcurrency: number;
  autoRenewLock?: boolean;
  /** How often the janitor sweeps (expired leases, undispatched outbox rows, stalled jobs). */
  janitorIntervalMs?: number;
  janitor?: Partial<JanitorOptions>;
  /** Reschedule delays after a transient fault (core/settlement.ts); tests make them short. */
  settlement?: Partial<Omit<SettlementPolicy, 'maxDeliveryCount'>>;
}

/**
 * Runs the engine on the in-process transport: the same roles the Service Bus triggers play in
 * the Functions app, settled by the same policy (core/settlement.ts).
 */
export class InProcessWorker {
  private readonly jobConsumer: QueueConsumer;
  private readonly taskConsumer: QueueConsumer;
  private readonly submissionConsumer: QueueConsumer;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;
  private readonly deadLetterConsumers: DeadLetterConsumer[];

  constructor(
    private readonly machine: CoreMachine,
    transport: InProcessTransport,
    private readonly logger: Logger,
    options: WorkerOptions,
  ) {
    const autoRenewLock = options.autoRenewLock ?? true;
    const settlement = options.settlement ? { settlement: options.settlement } : {};
    this.jobConsumer = new QueueConsumer(
      transport.jobs,
      (batch) => this.handleJobs(batch),
      { maxBatchSize: 1, concurrency: options.jobConcurrency, autoRenewLock, ...settlement },
      logger,
    );
    this.taskConsumer = new QueueConsumer(
      transport.tasks,
      (batch) => this.handleTasks(batch),
      { maxBatchSize: options.taskBatchSize, concurrency: options.taskConcurrency, autoRenewLock, unpackTasks: true, ...settlement },
      logger,
    );
    this.submissionConsumer = new QueueConsumer(
      transport.submissions,
      (batch) => this.handleSubmissions(batch),
      { maxBatchSize: 1, concurrency: options.jobConcurrency, autoRenewLock, ...settlement },
      logger,
    );
    this.deadLetterConsumers = [transport.jobs, transport.tasks, transport.submissions].map((queue) => new DeadLetterConsumer(queue, machine, logger));
    if (options.janitorIntervalMs) this.scheduleSweep(options.janitorIntervalMs, options.janitor);
    // In the workers view from the start, not from its first task: an idle worker is still one.
    machine.presence.start();
  }

  /**
   * The next sweep starts an interval after the previous one ended: sweeps never pile up on a busy
   * database. A failed sweep changes nothing; the error is logged and the next one runs it again.
   */
  private scheduleSweep(intervalMs: number, janitor: Partial<JanitorOptions> | undefined): void {
    this.sweepTimer = setTimeout(() => {
      this.sweeping = this.machine
        .sweep(janitor)
        .then(
          () => undefined,
          (error: unknown) => this.logger.error('janitor sweep failed', { error: errorToShape(error) }),
        )
        .finally(() => {
          this.sweeping = undefined;
          if (!this.stopped) this.scheduleSweep(intervalMs, janitor);
        });
    }, intervalMs);
    this.sweepTimer.unref();
  }

  /**
   * Resolves once both queues are empty and nothing is being handled. Both consumers are checked
   * in the same tick: a job message in flight can still fan out to the tasks queue.
   */
  async drain(): Promise<void> {
    while (!(
      this.jobConsumer.isIdle() &&
      this.taskConsumer.isIdle() &&
      this.submissionConsumer.isIdle() &&
      this.deadLetterConsumers.every((c) => c.isIdle())
    )) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /**
   * Stops taking messages, then waits for what is in flight. With `graceMs` (shutdown), running
   * handlers get that long to finish; the engine then gives back the claims of those still running
   * (machine.drain), and their batches get a moment to settle before the stop returns. Messages not
   * yet started need nothing: they live in this process's queues and are rebuilt from PostgreSQL by
   * whichever instance starts next (machine.resumeAfterStart).
   */
  async stop(graceMs?: number): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    const consumers = [this.jobConsumer, this.taskConsumer, this.submissionConsumer];
    if (graceMs !== undefined) {
      for (const consumer of consumers) consumer.halt();
      await this.machine.drain(graceMs);
    }
    await this.sweeping;
    const settle = graceMs === undefined ? Infinity : SETTLE_AFTER_DRAIN_MS;
    await Promise.all([...consumers.map((consumer) => consumer.stop(settle)), ...this.deadLetterConsumers.map((c) => c.stop())]);
    // Nothing is handled any more: this host leaves the workers view (drain above may have already).
    await this.machine.presence.leave();
  }

  /** Job messages one at a time: whatever the engine returns or throws, the policy settles. */
  private async handleJobs(batch: HeldMessage[]): Promise<HandlingResult[]> {
    const results: HandlingResult[] = [];
    for (const message of batch) results.push(await handling(() => this.machine.processJobMessage(message.body, messageMetaOf(message))));
    return results;
  }

  /** Invalid submissions are non-retryable: the policy dead-letters them with the zod issues as the reason. */
  private async handleSubmissions(batch: HeldMessage[]): Promise<HandlingResult[]> {
    const results: HandlingResult[] = [];
    for (const message of batch) {
      const origin = { messageId: message.messageId, replyTo: message.replyTo, correlationId: message.correlationId };
      results.push(await handling(async () => void (await this.machine.submitFromMessage(message.body, origin))));
    }
    return results;
  }

  /** One engine call per batch; if it throws, the consumer settles every message with that error. */
  private async handleTasks(batch: HeldMessage[]): Promise<HandlingResult[]> {
    const outcomes = await this.machine.processTaskMessages(
      batch.map((message) => message.body),
      batch.map(messageMetaOf),
    );
    return outcomes.map((outcome) => ({ ok: true, outcome }));
  }
}
