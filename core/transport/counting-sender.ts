import type { ServiceBusMessage, ServiceBusMessageBatch, ServiceBusSender } from '@azure/service-bus';
import type { OperationCounts } from './operation-counts';

export type Sender = Pick<ServiceBusSender, 'createMessageBatch' | 'sendMessages' | 'scheduleMessages' | 'close'>;
type Sendable = Parameters<ServiceBusSender['sendMessages']>[0];

/**
 * A Service Bus sender that counts what it hands over: every message a send or a schedule carried,
 * once the broker accepted it (core/transport/operation-counts.ts). Wrapping the sender, not each call
 * site, means no send path of the transport can be left out.
 */
export function countingSender(sender: Sender, counts: OperationCounts): Sender {
  return {
    createMessageBatch: (options) => sender.createMessageBatch(options),
    close: () => sender.close(),
    sendMessages: async (messages, options) => {
      await sender.sendMessages(messages, options);
      counts.add('send', messageCount(messages));
      counts.addBytes('sent', messageBytes(messages));
    },
    scheduleMessages: async (messages, at, options) => {
      const sequenceNumbers = await sender.scheduleMessages(messages, at, options);
      counts.add('schedule', messageCount(messages));
      counts.addBytes('sent', messageBytes(messages));
      return sequenceNumbers;
    },
  };
}

function isBatch(messages: Sendable): messages is ServiceBusMessageBatch {
  return typeof (messages as Partial<ServiceBusMessageBatch>).tryAddMessage === 'function';
}

function messageCount(messages: Sendable): number {
  if (isBatch(messages)) return messages.count;
  return Array.isArray(messages) ? messages.length : 1;
}

/** A batch knows its encoded size; single messages (receipts, rescheduled copies) are estimated from their JSON. */
function messageBytes(messages: Sendable): number {
  if (isBatch(messages)) return messages.sizeInBytes;
  const list = (Array.isArray(messages) ? messages : [messages]) as ServiceBusMessage[];
  return list.reduce((sum, message) => sum + (JSON.stringify(message.body)?.length ?? 0) + String(message.messageId ?? '').length, 0);
}
