import { randomBytes } from 'node:crypto';
import { DEFAULT_FEEDER_OPTIONS, SourceFeeder, type FeederOptions, type MessageSource } from './message-source';
import { OperationCounts } from './operation-counts';

/**
 * One queue with Azure Service Bus peek-lock semantics, in memory:
 * - a received message is locked for `lockDurationMs`; unsettled when the lock expires, it becomes
 *   visible again and its delivery count grows (redelivery while the first handler may still run);
 * - complete removes it, abandon makes it visible again at once, deadLetter moves it aside;
 * - a delivery past `maxDeliveryCount` goes to the dead-letter queue (MaxDeliveryCountExceeded);
 * - settling with a lock that expired throws MessageLockLostError, as the SDK does;
 * - optional duplicate detection drops a message whose messageId was seen within the window;
 * - scheduled messages become visible at their enqueue time;
 * - an attached source (a stage's messages, read from the database a page at a time) is pulled
 *   when fewer than `lowWaterMark` messages are visible: the queue holds per-message state only
 *   for messages it has taken in, as Service Bus holds the rest server-side.
 * Every client operation is counted, per message, in `operations` (core/transport/operation-counts.ts):
 * the transport passes its own counter, so all its queues add to one.
 */
export interface QueueMessage {
  messageId: string;
  body: unknown;
  applicationProperties?: Record<string, string | number | boolean>;
  /** Broker properties, as a Service Bus message has them. */
  replyTo?: string;
  correlationId?: string;
}

export interface ReceivedMessage extends QueueMessage {
  readonly lockToken: string;
  readonly deliveryCount: number;
  readonly enqueuedTimeUtc: Date;
}

export interface DeadLetteredMessage extends QueueMessage {
  deadLetterReason: string;
  deadLetterErrorDescription: string;
  deliveryCount: number;
}

export interface QueueOptions {
  lockDurationMs: number;
  maxDeliveryCount: number;
  duplicateDetectionWindowMs: number;
  /**
   * The largest message a send accepts, body, id and application properties, in bytes: Service
   * Bus Standard refuses a message over 256 KB (Premium: up to 100 MB, as configured), so a message
   * the engine builds (a pack of tasks included) fails here as it would there.
   * @default 262144
   */
  maxMessageBytes?: number;
  /** Paging of attached sources (defaults: DEFAULT_FEEDER_OPTIONS). */
  feeder?: Partial<FeederOptions>;
  /**
   * What one visible message counts toward the feeder's low-water mark (default 1): on the tasks
   * queue, a pack counts its tasks, so the queue holds about as many tasks ahead of its consumers
   * with packing as without (counting packs as one, it held 16 times as many).
   */
  weightOf?: (properties: Readonly<Record<string, unknown>> | undefined) => number;
}

export class MessageLockLostError extends Error {
  override readonly name = 'MessageLockLostError';
}

/** Service Bus Standard's message size limit (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas). */
export const STANDARD_MAX_MESSAGE_BYTES = 256 * 1024;

/** What Service Bus answers a send of a message over the size limit with (MessageSizeExceeded). */
export class MessageSizeExceededError extends Error {
  override readonly name = 'MessageSizeExceededError';
}

/**
 * A message as the queue holds it: its body as the JSON text a Service Bus message with content
 * type application/json carries (the engine's transports send nothing else), so every receive
 * parses its own copy, as a Functions trigger does, and a receiver's changes never reach the queue.
 */
interface StoredMessage {
  messageId: string;
  bodyJson: string;
  /** Body, id and properties, without AMQP framing: the size counted for Premium throughput, measured once at send. */
  bytes: number;
  applicationProperties?: Record<string, string | number | boolean>;
  replyTo?: string;
  correlationId?: string;
}

interface Entry {
  message: StoredMessage;
  /** Its share of the visible weight (QueueOptions.weightOf), fixed at send. */
  weight: number;
  deliveryCount: number;
  enqueuedTimeUtc: Date;
  visibleAt: number;
  sequence: number;
}

interface Lock {
  entry: Entry;
  /** Epoch ms at which the lock expires unless renewed. */
  lockedUntil: number;
}

export class InProcessQueue {
  private readonly ready: Entry[] = [];
  /** The weights of the ready entries, summed (what the feeder's low-water mark is compared with). */
  private readyWeight = 0;
  private readonly scheduled: Entry[] = [];
  /**
   * Every lock lasts lockDurationMs from its receive or renewal, and a renewal re-inserts its lock,
   * so insertion order is expiry order: one timer, armed for the first lock, expires them all.
   */
  private readonly locks = new Map<string, Lock>();
  private lockTimer: NodeJS.Timeout | undefined;
  /** Lock tokens: unique per queue instance, like Service Bus's GUIDs, without a GUID per message. */
  private readonly tokenPrefix = `${randomBytes(8).toString('hex')}-`;
  private lockSequence = 0;
  private readonly seenIds = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  private scheduleTimer: NodeJS.Timeout | undefined;
  private sequence = 0;
  readonly deadLetters: DeadLetteredMessage[] = [];
  readonly stats = { sent: 0, duplicatesDropped: 0, delivered: 0, completed: 0, abandoned: 0, lockExpired: 0, deadLettered: 0 };
  /** Attached sources still being read; `feeder.failures` holds why a source was given up. */
  readonly feeder: SourceFeeder<QueueMessage>;

  constructor(
    readonly name: string,
    readonly options: QueueOptions,
    readonly operations: OperationCounts = new OperationCounts(),
  ) {
    this.feeder = new SourceFeeder<QueueMessage>(
      { ...DEFAULT_FEEDER_OPTIONS, ...options.feeder },
      () => this.readyWeight,
      (messages) => this.send(messages),
    );
  }

  /** Messages to be pulled on demand, in order after everything sent or attached before. */
  attachSource(source: MessageSource<QueueMessage>): void {
    this.feeder.attach(source);
  }

  send(messages: readonly QueueMessage[], scheduledAt?: Date): void {
    const now = Date.now();
    // All encoded before any is enqueued: a batch with a body that cannot be sent sends nothing.
    const maxBytes = this.options.maxMessageBytes ?? STANDARD_MAX_MESSAGE_BYTES;
    const stored = messages.map((message) => storeMessage(message, maxBytes));
    // A duplicate dropped by detection was still sent: Service Bus took the operation.
    this.operations.add(scheduledAt ? 'schedule' : 'send', stored.length);
    this.operations.addBytes(
      'sent',
      stored.reduce((sum, message) => sum + message.bytes, 0),
    );
    for (const message of stored) {
      if (this.isDuplicate(message.messageId, now)) {
        this.stats.duplicatesDropped++;
        continue;
      }
      this.stats.sent++;
      const visibleAt = scheduledAt ? scheduledAt.getTime() : now;
      const weight = this.options.weightOf ? this.options.weightOf(message.applicationProperties) : 1;
      const entry: Entry = { message, weight, deliveryCount: 0, enqueuedTimeUtc: new Date(now), visibleAt, sequence: this.sequence++ };
      if (visibleAt > now) this.scheduled.push(entry);
      else this.makeReady(entry);
    }
    this.armScheduleTimer();
    this.notify();
  }

  /**
   * Locks and returns up to `max` visible messages, oldest first; with `weightOf`, messages until
   * their weights reach `max` (at least one): a consumer of packs counts tasks, not messages.
   */
  receive(max: number, weightOf?: (properties: Readonly<Record<string, unknown>> | undefined) => number): ReceivedMessage[] {
    this.promoteScheduled();
    let count = max;
    if (weightOf) {
      let weight = 0;
      count = 0;
      while (count < this.ready.length && weight < max) {
        weight += weightOf((this.ready[count] as Entry).message.applicationProperties);
        count++;
      }
    }
    const taken = this.ready.splice(0, count);
    for (const entry of taken) this.readyWeight -= entry.weight;
    this.feeder.refill();
    const lockedUntil = Date.now() + this.options.lockDurationMs;
    this.operations.add('receive', taken.length);
    const received = taken.map((entry): ReceivedMessage => {
      entry.deliveryCount++;
      this.stats.delivered++;
      this.operations.addBytes('received', entry.message.bytes);
      const lockToken = `${this.tokenPrefix}${++this.lockSequence}`;
      this.locks.set(lockToken, { entry, lockedUntil });
      return Object.assign(loadMessage(entry.message), { lockToken, deliveryCount: entry.deliveryCount, enqueuedTimeUtc: entry.enqueuedTimeUtc });
    });
    this.armLockTimer();
    return received;
  }

  /** No notification: a completion makes nothing visible, and a consumer pumps again when its batch ends. */
  complete(message: ReceivedMessage): void {
    // Counted before the lock check: a settle with a lost lock is still a call the broker answers.
    this.operations.add('complete');
    this.takeLock(message);
    this.stats.completed++;
  }

  abandon(message: ReceivedMessage): void {
    this.operations.add('abandon');
    const { entry } = this.takeLock(message);
    this.stats.abandoned++;
    this.requeue(entry);
  }

  deadLetter(message: ReceivedMessage, reason: string, description: string): void {
    this.operations.add('deadLetter');
    const { entry } = this.takeLock(message);
    this.moveToDeadLetter(entry, reason, description);
  }

  renewLock(message: ReceivedMessage): void {
    this.operations.add('renew');
    const lock = this.locks.get(message.lockToken);
    if (!lock) throw new MessageLockLostError(`lock on message ${message.messageId} in ${this.name} was lost`);
    // To the back: it now expires last.
    this.locks.delete(message.lockToken);
    lock.lockedUntil = Date.now() + this.options.lockDurationMs;
    this.locks.set(message.lockToken, lock);
  }

  /** Messages visible now or later, plus those locked by a receiver (a pending source counts one). */
  get activeCount(): number {
    return this.ready.length + this.scheduled.length + this.locks.size + this.feeder.pending;
  }

  /** Sources attached whose messages have not all been taken in yet. */
  get pendingSources(): number {
    return this.feeder.pending;
  }

  get visibleCount(): number {
    this.promoteScheduled();
    return this.ready.length;
  }

  /** The visible messages' weights (QueueOptions.weightOf), summed: on the tasks queue, tasks. */
  get visibleWeight(): number {
    this.promoteScheduled();
    return this.readyWeight;
  }

  onActivity(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.feeder.close();
    if (this.lockTimer) clearTimeout(this.lockTimer);
    this.lockTimer = undefined;
    this.locks.clear();
    if (this.scheduleTimer) clearTimeout(this.scheduleTimer);
    this.listeners.clear();
  }

  private isDuplicate(messageId: string, now: number): boolean {
    const window = this.options.duplicateDetectionWindowMs;
    if (window <= 0) return false;
    const seen = this.seenIds.get(messageId);
    if (seen !== undefined && now - seen < window) return true;
    this.seenIds.set(messageId, now);
    return false;
  }

  private takeLock(message: ReceivedMessage): Lock {
    const lock = this.locks.get(message.lockToken);
    if (!lock) {
      throw new MessageLockLostError(`lock on message ${message.messageId} in ${this.name} expired or was already settled`);
    }
    this.locks.delete(message.lockToken);
    return lock;
  }

  /** Arms the lock timer for the first lock to expire, unless it is armed already. */
  private armLockTimer(): void {
    if (this.lockTimer) return;
    const first = this.locks.values().next();
    if (first.done) return;
    this.lockTimer = setTimeout(
      () => {
        this.lockTimer = undefined;
        this.expireLocks();
      },
      Math.max(0, first.value.lockedUntil - Date.now()),
    );
    this.lockTimer.unref();
  }

  /** Locks past their time: the messages become visible again (delivery count kept), as on Service Bus. */
  private expireLocks(): void {
    const now = Date.now();
    const expired: Entry[] = [];
    for (const [lockToken, lock] of this.locks) {
      if (lock.lockedUntil > now) break;
      this.locks.delete(lockToken);
      expired.push(lock.entry);
    }
    this.armLockTimer();
    for (const entry of expired) {
      this.stats.lockExpired++;
      this.requeue(entry);
    }
  }

  private requeue(entry: Entry): void {
    if (entry.deliveryCount >= this.options.maxDeliveryCount) {
      this.moveToDeadLetter(
        entry,
        'MaxDeliveryCountExceeded',
        `delivered ${entry.deliveryCount} times without being completed (max ${this.options.maxDeliveryCount})`,
      );
      return;
    }
    this.makeReady(entry);
    this.ready.sort((a, b) => a.sequence - b.sequence);
    this.notify();
  }

  private makeReady(entry: Entry): void {
    this.ready.push(entry);
    this.readyWeight += entry.weight;
  }

  private moveToDeadLetter(entry: Entry, reason: string, description: string): void {
    this.stats.deadLettered++;
    this.deadLetters.push({
      ...loadMessage(entry.message),
      deadLetterReason: reason,
      deadLetterErrorDescription: description,
      deliveryCount: entry.deliveryCount,
    });
    this.notify();
  }

  private promoteScheduled(): void {
    const now = Date.now();
    let moved = false;
    for (let i = this.scheduled.length - 1; i >= 0; i--) {
      const entry = this.scheduled[i];
      if (entry && entry.visibleAt <= now) {
        this.scheduled.splice(i, 1);
        this.makeReady(entry);
        moved = true;
      }
    }
    if (moved) this.ready.sort((a, b) => a.sequence - b.sequence);
  }

  private armScheduleTimer(): void {
    if (this.scheduleTimer) clearTimeout(this.scheduleTimer);
    this.scheduleTimer = undefined;
    if (this.scheduled.length === 0) return;
    const next = Math.min(...this.scheduled.map((entry) => entry.visibleAt));
    this.scheduleTimer = setTimeout(
      () => {
        this.promoteScheduled();
        this.armScheduleTimer();
        this.notify();
      },
      Math.max(0, next - Date.now()),
    );
    this.scheduleTimer.unref();
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}

function storeMessage(message: QueueMessage, maxBytes: number): StoredMessage {
  const bodyJson = JSON.stringify(message.body) as string | undefined;
  // What Service Bus would refuse to encode is refused here, at send, not at some later receive.
  if (bodyJson === undefined) throw new TypeError(`message ${message.messageId}: body is not JSON-serialisable`);
  const propertiesBytes = message.applicationProperties ? JSON.stringify(message.applicationProperties).length : 0;
  const bytes = Buffer.byteLength(bodyJson) + message.messageId.length + propertiesBytes;
  if (bytes > maxBytes) throw new MessageSizeExceededError(`message ${message.messageId} is ${bytes} bytes; the queue takes at most ${maxBytes}`);
  return {
    messageId: message.messageId,
    bodyJson,
    bytes,
    ...(message.applicationProperties ? { applicationProperties: { ...message.applicationProperties } } : {}),
    ...(message.replyTo === undefined ? {} : { replyTo: message.replyTo }),
    ...(message.correlationId === undefined ? {} : { correlationId: message.correlationId }),
  };
}

/** A receiver's own copy of a stored message (built by assignment: this runs once per delivery). */
function loadMessage(stored: StoredMessage): QueueMessage {
  const message: QueueMessage = { messageId: stored.messageId, body: JSON.parse(stored.bodyJson) as unknown };
  if (stored.applicationProperties) message.applicationProperties = { ...stored.applicationProperties };
  if (stored.replyTo !== undefined) message.replyTo = stored.replyTo;
  if (stored.correlationId !== undefined) message.correlationId = stored.correlationId;
  return message;
}
