import type { WorkerJson } from './api-client';
import { formatTime, table } from './format';
import type { CliIo } from './io';
import type { parse as parseFn } from './remote';
import { oneLine } from './visible';

type Parse = typeof parseFn;

/**
 * `coremachine workers`: remote workers and in-process hosts, what they take and the tasks they
 * hold now. Ids, hosts and task types are the workers' own text: every cell is printed through
 * oneLine (table does it), so a worker cannot name itself into a fake row.
 */
export async function listWorkers(args: readonly string[], io: CliIo, parse: Parse): Promise<number> {
  const { values, clientFor } = parse(args, { json: { type: 'boolean' } }, []);
  const { workers } = await clientFor(io).workers();
  if (values.json === true) {
    io.out(`${JSON.stringify(workers, null, 2)}\n`);
    return 0;
  }
  if (workers.length === 0) {
    io.out('no workers seen: none has claimed a remote task or run a queue task lately\n');
    return 0;
  }
  const rows = workers.map((w) => [
    w.workerId,
    w.kind,
    w.host ?? '',
    String(w.tasksHeld),
    formatTime(w.lastClaimAt),
    heartbeat(w),
    w.taskTypes.map(oneLine).join(', '),
  ]);
  io.out(`${table(['WORKER', 'KIND', 'HOST', 'HELD', 'LAST CLAIM', 'LAST HEARTBEAT', 'TASK TYPES'], rows)}\n`);
  return 0;
}

/** The heartbeat's age, and whether that makes the worker stale (stopped, lost, or between long heartbeats). */
function heartbeat(w: WorkerJson): string {
  const age = w.heartbeatAgeSeconds < 120 ? `${Math.round(w.heartbeatAgeSeconds)} s ago` : `${Math.round(w.heartbeatAgeSeconds / 60)} min ago`;
  return w.stale ? `${age} (stale)` : age;
}
