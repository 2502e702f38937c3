import { createHash } from 'node:crypto';
import { DEFAULT_MAX_PACKED_TASKS, MAX_PACKED_TASKS, parsePackedTaskMessage, type PackedTaskMessage, taskMessageId, type TaskQueueMessage } from '../../models';
import type { HeldMessage } from './settle-batch';

/**
 * Packing task messages (models/messages.ts PackedTaskMessage). A stage of many short tasks sent
 * one message per task costs three Service Bus operations per task (send, receive, complete); sent
 * in packs of 16 it costs about 0.19. A stage of a few long tasks must still spread one task per
 * message across instances, so the pack size follows how many messages go out at once: nothing is
 * packed until a send holds at least MIN_MESSAGES_PER_SEND packs' worth.
 */

export { DEFAULT_MAX_PACKED_TASKS } from '../../models/messages';

/** A dispatch keeps at least this many messages before it packs: enough to spread over instances. */
export const MIN_MESSAGES_PER_DISPATCH = 32;

/**
 * How many tasks each message of a dispatch of `count` tasks carries. A stage's tasks are created
 * and dispatched in chunks that grow from 100 (core/engine/stage-creation.ts), so its first tasks go
 * out in small packs that reach many instances fast, and its bulk in full ones.
 */
export function packSize(count: number, maxPacked: number = DEFAULT_MAX_PACKED_TASKS): number {
  const limit = Math.min(Math.max(1, Math.floor(maxPacked)), MAX_PACKED_TASKS);
  return Math.max(1, Math.min(limit, Math.floor(count / MIN_MESSAGES_PER_DISPATCH)));
}

/** A chunk's size, which sets how many of its tasks a message carries; a whole stage's re-dispatch counts its pages. */
export function dispatchSizeOf(intent: { chunk?: { from: number; through?: number } | undefined }): { dispatchSize?: number } {
  const chunk = intent.chunk;
  return chunk?.through === undefined ? {} : { dispatchSize: chunk.through - chunk.from + 1 };
}

/** One message to send: a task on its own, or a pack. */
export type OutgoingTaskMessage =
  { messageId: string; body: TaskQueueMessage; tasks: [TaskQueueMessage] } | { messageId: string; body: PackedTaskMessage; tasks: TaskQueueMessage[] };

/**
 * Deterministic, like a single task message's id, so a re-send of the same pack is dropped by
 * duplicate detection: the hash of its tasks' own message ids, in order (at most 128 characters).
 */
export function packedMessageId(tasks: readonly TaskQueueMessage[]): string {
  const hash = createHash('sha256');
  for (const task of tasks) hash.update(`${taskMessageId(task)}\n`);
  return `pack:${hash.digest('hex')}`;
}

/**
 * Groups consecutive messages of the same job, stage, task type and re-send into packs of
 * packSize(dispatchSize); a group's remainder of one goes alone. Order is kept. `dispatchSize` is
 * how many tasks the dispatch these messages are a page of holds (a stage chunk), when known.
 */
export function packTaskMessages(
  messages: readonly TaskQueueMessage[],
  maxPacked: number = DEFAULT_MAX_PACKED_TASKS,
  dispatchSize: number = messages.length,
): OutgoingTaskMessage[] {
  const size = packSize(dispatchSize, maxPacked);
  const out: OutgoingTaskMessage[] = [];
  let group: TaskQueueMessage[] = [];
  const flush = () => {
    if (group.length === 1)
      out.push({ messageId: taskMessageId(group[0] as TaskQueueMessage), body: group[0] as TaskQueueMessage, tasks: [group[0] as TaskQueueMessage] });
    else if (group.length > 1) out.push({ messageId: packedMessageId(group), body: { packed: group }, tasks: group });
    group = [];
  };
  for (const message of messages) {
    const first = group[0];
    const sameKind =
      first !== undefined &&
      first.jobId === message.jobId &&
      first.stage === message.stage &&
      first.taskType === message.taskType &&
      first.resend === message.resend;
    if (!sameKind || group.length >= size) flush();
    group.push(message);
  }
  flush();
  return out;
}

/** How many tasks a message carries, from its application properties: a pack's count (`packed`), else one. */
export function tasksIn(properties: Readonly<Record<string, unknown>> | undefined): number {
  const packed = properties?.packed;
  return typeof packed === 'number' && Number.isInteger(packed) && packed > 1 ? packed : 1;
}

/** The tasks a held message packs, or undefined when it is not a pack (a single message, or anything else). */
export function packedTasksOf(message: HeldMessage): TaskQueueMessage[] | undefined {
  if (typeof message.body !== 'object' || message.body === null || !('packed' in message.body)) return undefined;
  const parsed = parsePackedTaskMessage(message.body);
  // Not a well-formed pack: handled as a single message, which the engine finds malformed.
  return parsed.success ? parsed.data.packed : undefined;
}

/**
 * A batch as received (physical messages) and as the engine handles it (logical: each single
 * message, and each task of a pack). A pack that was delivered before is not handled: it is split.
 */
export interface UnpackedBatch {
  physical: readonly HeldMessage[];
  logical: HeldMessage[];
  /** For each logical message, the index of the physical message it came from. */
  owner: number[];
  /** Physical messages that are packs: their tasks. */
  packs: Map<number, TaskQueueMessage[]>;
  /**
   * Packs delivered before (their host died, or the batch was given back): sent again as single
   * messages and completed without being handled, so that a task that kills its host goes to the
   * dead-letter queue alone, never taking its neighbours with it.
   */
  split: Set<number>;
}

/** A batch whose messages are never packs (the jobs and submissions queues). */
export function singles(messages: readonly HeldMessage[]): UnpackedBatch {
  return { physical: messages, logical: [...messages], owner: messages.map((_, index) => index), packs: new Map(), split: new Set() };
}

/** Expands the packs of a tasks-queue batch into one logical message per task. */
export function unpackTaskBatch(messages: readonly HeldMessage[]): UnpackedBatch {
  const batch: UnpackedBatch = { physical: messages, logical: [], owner: [], packs: new Map(), split: new Set() };
  for (const [index, message] of messages.entries()) {
    const tasks = packedTasksOf(message);
    if (!tasks) {
      batch.logical.push(message);
      batch.owner.push(index);
      continue;
    }
    batch.packs.set(index, tasks);
    if ((message.deliveryCount ?? 1) > 1) {
      batch.split.add(index);
      continue;
    }
    for (const task of tasks) {
      batch.logical.push(taskOfPack(message, task));
      batch.owner.push(index);
    }
  }
  return batch;
}

/** One task of a pack as a message of its own: the id it would have had alone, the pack's delivery facts. */
export function taskOfPack(pack: HeldMessage, task: TaskQueueMessage): HeldMessage {
  const { packed: _count, ...properties } = pack.applicationProperties;
  return {
    messageId: taskMessageId(task),
    body: task,
    deliveryCount: pack.deliveryCount,
    enqueuedTime: pack.enqueuedTime,
    applicationProperties: { ...properties, taskId: task.taskId },
  };
}
