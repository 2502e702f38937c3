/** What the transport knows about a message besides its body. */
export interface MessageMeta {
  messageId?: string | undefined;
  deliveryCount?: number | undefined;
  /** W3C trace context from the message's application properties. */
  traceparent?: string | undefined;
  enqueuedTime?: Date | undefined;
}

/** The span attributes a message contributes (only those the transport gave). */
export function messageAttributes(meta: MessageMeta): Record<string, string | number> {
  return { ...(meta.messageId ? { messageId: meta.messageId } : {}), ...(meta.deliveryCount ? { deliveryCount: meta.deliveryCount } : {}) };
}
