import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { ServiceBusClient, type ServiceBusMessage, type ServiceBusMessageBatch, type ServiceBusSender } from '@azure/service-bus';
import { jobEventMessageId, jobMessageId, type JobEvent, type JobQueueMessage, type SubmissionReceipt, type TaskQueueMessage } from '../../models';
import { traceProperties } from '../telemetry';
import { countingSender } from './counting-sender';
import { OperationCounts } from './operation-counts';
import { DEFAULT_MAX_PACKED_TASKS, packTaskMessages, type OutgoingTaskMessage } from './task-packing';
import { EVENTS_TOPIC, JOBS_QUEUE, TASKS_QUEUE, type RescheduledMessage, type Transport } from './transport';

/** The part of the SDK sender this transport uses; a real `ServiceBusSender` satisfies it, and so can a test fake. */
export type ServiceBusSenderLike = Pick<ServiceBusSender, 'createMessageBatch' | 'sendMessages' | 'scheduleMessages' | 'close'>;

/** The part of `ServiceBusClient` this transport uses: the injection point for tests. */
export interface ServiceBusClientLike {
  createSender(queueName: string): ServiceBusSenderLike;
  close(): Promise<void>;
}

export interface ServiceBusTransportOptions {
  /**
   * Upper bound for one batch. Unset, the SDK uses the link's maximum message size (256 KB on
   * Standard, larger on Premium), which is what we want in production; tests set it small.
   */
  maxBatchSizeInBytes?: number;
  /**
   * The most task messages one Service Bus message carries (core/transport/task-packing.ts); 1
   * sends one message per task.
   * @default 16
   */
  maxPackedTasks?: number;
}

/** App setting names shared with the Functions Service Bus trigger binding (`connection: 'ServiceBusConnection'`). */
export const SERVICE_BUS_CONNECTION_SETTING = 'ServiceBusConnection';
export const SERVICE_BUS_NAMESPACE_SETTING = `${SERVICE_BUS_CONNECTION_SETTING}__fullyQualifiedNamespace`;
/** Set only for a user-assigned identity; the Functions binding reads the same name. */
export const SERVICE_BUS_CLIENT_ID_SETTING = `${SERVICE_BUS_CONNECTION_SETTING}__clientId`;

/**
 * Sends job and task messages to the two Service Bus queues.
 *
 * One client per process and one sender per queue, created on first use: AMQP links are
 * expensive to open and the SDK multiplexes them over the client's single connection.
 */
export class ServiceBusTransport implements Transport {
  readonly durable = true;
  readonly name = 'service-bus';
  private readonly senders = new Map<string, ServiceBusSenderLike>();
  /** Sends counted by the senders; the Functions triggers add what the host receives and settles. */
  private readonly operationCounts = new OperationCounts();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly client: ServiceBusClientLike,
    private readonly options: ServiceBusTransportOptions = {},
  ) {}

  static fromConnectionString(connectionString: string, options?: ServiceBusTransportOptions): ServiceBusTransport {
    return new ServiceBusTransport(new ServiceBusClient(connectionString), options);
  }

  static fromNamespace(
    fullyQualifiedNamespace: string,
    credential: TokenCredential = new DefaultAzureCredential(),
    options?: ServiceBusTransportOptions,
  ): ServiceBusTransport {
    return new ServiceBusTransport(new ServiceBusClient(fullyQualifiedNamespace, credential), options);
  }

  async sendJobMessages(messages: readonly JobQueueMessage[]): Promise<void> {
    await this.inBatches(JOBS_QUEUE, messages.map(toJobMessage), (sender, batch) => sender.sendMessages(batch));
  }

  async sendTaskMessages(messages: readonly TaskQueueMessage[], options: { dispatchSize?: number } = {}): Promise<void> {
    await this.inBatches(TASKS_QUEUE, this.packed(messages, options.dispatchSize), (sender, batch) => sender.sendMessages(batch));
  }

  private packed(messages: readonly TaskQueueMessage[], dispatchSize?: number): ServiceBusMessage[] {
    const traceparent = traceProperties();
    return packTaskMessages(messages, this.options.maxPackedTasks ?? DEFAULT_MAX_PACKED_TASKS, dispatchSize).map((message) =>
      toTaskMessage(message, traceparent),
    );
  }

  async scheduleTaskMessages(messages: readonly TaskQueueMessage[], at: Date): Promise<void> {
    // The SDK sends all of scheduleMessages' messages as one management request, itself an AMQP
    // message under the same size limit as a batch; chunking by batch size keeps a large retry
    // wave under it.
    await this.inBatches(TASKS_QUEUE, this.packed(messages), async (sender, _batch, chunk) => {
      await sender.scheduleMessages(chunk, at);
    });
  }

  async publishEvents(events: readonly JobEvent[]): Promise<void> {
    await this.inBatches(EVENTS_TOPIC, events.map(toEventMessage), (sender, batch) => sender.sendMessages(batch));
  }

  /** A scheduled copy (its own messageId, so duplicate detection keeps it) on any of our queues. */
  async reschedule(queue: string, message: RescheduledMessage, at: Date): Promise<void> {
    const copy: ServiceBusMessage = {
      messageId: message.messageId,
      contentType: 'application/json',
      body: message.body,
      applicationProperties: message.applicationProperties,
    };
    await this.sender(queue).scheduleMessages([copy], at);
  }

  /** A submission's receipt, to the queue its submitter named; its correlationId ties it to the submission. */
  async sendReceipt(queue: string, receipt: SubmissionReceipt, properties: { messageId: string; correlationId: string | null }): Promise<void> {
    const message: ServiceBusMessage = {
      messageId: properties.messageId,
      contentType: 'application/json',
      body: receipt,
      ...(properties.correlationId === null ? {} : { correlationId: properties.correlationId }),
    };
    await this.sender(queue).sendMessages([message]);
  }

  operations(): OperationCounts {
    return this.operationCounts;
  }

  /** Closes every sender, then the client; safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    const senders = [...this.senders.values()];
    this.senders.clear();
    const results = await Promise.allSettled(senders.map((sender) => sender.close()));
    // The client is closed even when a sender fails to close, so the connection is never leaked.
    results.push(...(await Promise.allSettled([this.client.close()])));
    const errors = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'closing the Service Bus transport failed');
  }

  private sender(queueName: string): ServiceBusSenderLike {
    if (this.closing) throw new Error(`ServiceBusTransport is closed: cannot send to ${queueName}`);
    let sender = this.senders.get(queueName);
    if (!sender) {
      sender = countingSender(this.client.createSender(queueName), this.operationCounts);
      this.senders.set(queueName, sender);
    }
    return sender;
  }

  /**
   * Packs messages, in order, into as few batches as the size limit allows and hands each one
   * over before starting the next. If a later batch fails, earlier ones are already on the queue;
   * that is safe because the caller re-sends all of them and the deterministic messageIds let
   * duplicate detection drop the repeats.
   */
  private async inBatches(
    queueName: string,
    messages: ServiceBusMessage[],
    handle: (sender: ServiceBusSenderLike, batch: ServiceBusMessageBatch, chunk: ServiceBusMessage[]) => Promise<void>,
  ): Promise<void> {
    if (messages.length === 0) return;
    const sender = this.sender(queueName);
    const batchOptions = this.options.maxBatchSizeInBytes === undefined ? undefined : { maxSizeInBytes: this.options.maxBatchSizeInBytes };
    let batch = await sender.createMessageBatch(batchOptions);
    let chunk: ServiceBusMessage[] = [];
    for (const message of messages) {
      if (batch.tryAddMessage(message)) {
        chunk.push(message);
        continue;
      }
      if (chunk.length > 0) {
        await handle(sender, batch, chunk);
        batch = await sender.createMessageBatch(batchOptions);
        chunk = [];
        if (batch.tryAddMessage(message)) {
          chunk.push(message);
          continue;
        }
      }
      // Retrying cannot make a message smaller, so fail now and name it.
      throw new Error(`message ${String(message.messageId)} does not fit in an empty Service Bus batch for ${queueName} (max ${batch.maxSizeInBytes} bytes)`);
    }
    await handle(sender, batch, chunk);
  }
}

function toJobMessage(body: JobQueueMessage): ServiceBusMessage {
  return {
    messageId: jobMessageId(body),
    contentType: 'application/json',
    body,
    // Lets operators filter and peek by job in the portal without parsing bodies.
    applicationProperties: { jobId: body.jobId, stage: body.stage, ...traceProperties() },
  };
}

function toEventMessage(event: JobEvent): ServiceBusMessage {
  return {
    messageId: jobEventMessageId(event),
    contentType: 'application/json',
    subject: event.type,
    body: event,
    // Subscriptions can filter on these with SQL rules (e.g. type = 'JobCompleted' AND jobType = 'ingest').
    applicationProperties: {
      type: event.type,
      jobId: event.jobId,
      jobType: event.jobType,
      status: event.status,
      stage: event.stage,
      ...identityProperties(event),
      ...traceProperties(),
    },
  };
}

/**
 * The job's name, creator and labels as properties a subscription can filter on: `name`,
 * `createdBy`, and `label.<key>` per label (a SQL rule brackets it: `[label.team] = 'data'`).
 * Bounded by validation (20 labels, short keys and values), so they stay far below the header limit.
 */
function identityProperties(event: JobEvent): Record<string, string> {
  return {
    ...(event.name === undefined ? {} : { name: event.name }),
    ...(event.createdBy === undefined ? {} : { createdBy: event.createdBy }),
    ...Object.fromEntries(Object.entries(event.labels ?? {}).map(([key, value]) => [`label.${key}`, value])),
  };
}

/** A task message, or a pack of them (its `packed` property says how many: the in-process consumer counts tasks by it). */
function toTaskMessage(message: OutgoingTaskMessage, traceparent: { traceparent?: string }): ServiceBusMessage {
  const first = message.tasks[0];
  const identity: Record<string, string | number> = message.tasks.length > 1 ? { packed: message.tasks.length } : { taskId: first.taskId };
  return {
    messageId: message.messageId,
    contentType: 'application/json',
    body: message.body,
    applicationProperties: { jobId: first.jobId, stage: first.stage, ...identity, ...traceparent },
  };
}

/**
 * Builds the transport from the same settings the Functions Service Bus binding reads, so one
 * app setting configures both the triggers and the sender: a connection string (local emulator,
 * or SAS) or a namespace reached with the app's managed identity.
 */
export function createServiceBusTransportFromEnv(env: NodeJS.ProcessEnv = process.env, options?: ServiceBusTransportOptions): ServiceBusTransport {
  // The connection string wins when both are set, as it does for the Functions binding.
  const connectionString = env[SERVICE_BUS_CONNECTION_SETTING]?.trim();
  if (connectionString) return ServiceBusTransport.fromConnectionString(connectionString, options);

  const namespace = env[SERVICE_BUS_NAMESPACE_SETTING]?.trim();
  if (namespace) {
    const clientId = env[SERVICE_BUS_CLIENT_ID_SETTING]?.trim();
    const credential = new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {});
    return ServiceBusTransport.fromNamespace(namespace, credential, options);
  }

  throw new Error(
    `Service Bus is not configured: set ${SERVICE_BUS_CONNECTION_SETTING} (a connection string, e.g. for the local emulator) ` +
      `or ${SERVICE_BUS_NAMESPACE_SETTING} (e.g. <namespace>.servicebus.windows.net, used with the app's managed identity)`,
  );
}
