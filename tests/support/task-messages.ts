import type { CoreMachine } from '../../core/engine/core-machine';
import type { InProcessQueue, ReceivedMessage } from '../../core/transport/in-process-queue';
import { packedTasksOf, tasksIn } from '../../core/transport/task-packing';
import { heldMessage } from '../../core/transport/queue-consumer';

/**
 * Tests that play the host by hand receive task messages and give their bodies to the engine. A
 * message may be a pack (core/transport/task-packing.ts): the host unpacks it, and so do these.
 */
export function taskBodies(messages: readonly ReceivedMessage[]): unknown[] {
  return messages.flatMap((message) => packedTasksOf(heldMessage(message)) ?? [message.body]);
}

/** Receives messages until they hold `maxTasks` tasks, as the in-process consumer does, and returns their task bodies. */
export function receiveTaskBodies(queue: InProcessQueue, maxTasks: number): { messages: ReceivedMessage[]; bodies: unknown[] } {
  const messages = queue.receive(maxTasks, tasksIn);
  return { messages, bodies: taskBodies(messages) };
}

/** Counts the task messages the engine is handed (each task of a pack is one): the deliveries a test asserts on. */
export function countTaskDeliveries(machine: CoreMachine): () => number {
  let delivered = 0;
  const process = machine.processTaskMessages.bind(machine);
  machine.processTaskMessages = (bodies, metas) => {
    delivered += bodies.length;
    return process(bodies, metas);
  };
  return () => delivered;
}
