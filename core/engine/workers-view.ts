import { WORKER_STALE_AFTER_SECONDS, type WorkerView } from '../../models/workers';
import type { Queryable } from '../db/pool';
import { listWorkers, type WorkerRow } from '../state/workers-store';

/** More than an operator reads in one view; ids are the workers' own, so their number is not ours to bound otherwise. */
export const MAX_LISTED_WORKERS = 500;

/** GET /api/workers: every worker with its task types, last claim and heartbeat, and the tasks it holds now. */
export async function workersView(db: Queryable): Promise<WorkerView[]> {
  return (await listWorkers(db, MAX_LISTED_WORKERS)).map(toWorkerView);
}

function toWorkerView(row: WorkerRow): WorkerView {
  const age = Math.max(0, row.heartbeat_age_seconds);
  return {
    workerId: row.worker_id,
    kind: row.kind,
    taskTypes: row.task_types,
    host: row.host,
    firstSeenAt: row.first_seen_at,
    lastClaimAt: row.last_claim_at,
    lastHeartbeatAt: row.last_heartbeat_at,
    heartbeatAgeSeconds: Math.round(age * 10) / 10,
    stale: age > WORKER_STALE_AFTER_SECONDS,
    tasksHeld: row.tasks_held,
  };
}
