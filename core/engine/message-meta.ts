/** What the transport knows about a message besides its body. */
export interface MessageMeta {
  messageId?: string | undefined;
  deliveryCount?: number | undefined;
  /** W3C trace context from the message's application properties. */
  traceparent?: string | undefined;
  enqueuedTime?: Date | undefined;
}

/**
 * Adds the span attributes a message contributes (only those the transport gave) to `attributes`.
 * Assigned, not spread: this runs once per task, and object spreads were a visible share of it.
 */
export function withMessageAttributes<T extends Record<string, string | number>>(
  attributes: T,
  meta: MessageMeta,
): T & { messageId?: string; deliveryCount?: number } {
  const out: T & { messageId?: string; deliveryCount?: number } = attributes;
  if (meta.messageId) out.messageId = meta.messageId;
  if (meta.deliveryCount) out.deliveryCount = meta.deliveryCount;
  return out;
}
