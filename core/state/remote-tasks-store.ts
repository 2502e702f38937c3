import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db/pool';
import type { TaskRow } from './rows';
import { freeSlotsOf, slotClaimOf, takeSlotsOf } from './limit-slots-sql';

/** Tasks of 'remote' types: claimed and released over HTTP instead of by queue messages. */

export type RemoteClaim = Pick<TaskRow, 'task_id' | 'job_id' | 'stage' | 'task_index' | 'task_type' | 'attempt' | 'parameters' | 'parameters_ref'> & {
  claim_id: string;
  lease_expires_at: Date;
};

/**
 * Claims up to `limit` QUEUED remote tasks of the given types (each with its own lease), oldest
 * first, only under jobs PROCESSING that stage; SKIP LOCKED lets workers claim side by side.
 */
export async function claimRemoteTasks(
  db: Queryable,
  request: { taskTypes: readonly string[]; leaseSeconds: readonly number[]; limit: number; workerId: string },
): Promise<RemoteClaim[]> {
  const result = await db.query<RemoteClaim>({
    name: 'cm_claim_remote_tasks',
    text: `WITH candidates AS (
             SELECT t.task_id, l.lease FROM coremachine.tasks t
               JOIN coremachine.jobs j ON j.job_id = t.job_id AND j.status = 'PROCESSING' AND j.stage = t.stage
                    AND COALESCE(LEAST(j.deadline_at, j.stage_deadline_at) > now(), true)
               JOIN unnest($1::text[], $4::float8[]) AS l(task_type, lease) ON l.task_type = t.remote_queued_type
              WHERE t.retry_at IS NULL OR t.retry_at <= now()
              ORDER BY t.created_at, t.task_index LIMIT $2 FOR UPDATE OF t SKIP LOCKED),
           claimed AS (UPDATE coremachine.tasks t SET status = 'PROCESSING', attempt = t.attempt + 1, claim_id = gen_random_uuid(),
                  lease_expires_at = now() + make_interval(secs => c.lease), started_at = now(), worker_id = $3,
                  slot_claim = ${slotClaimOf('t.limit_key', '$5')}
             FROM candidates c WHERE t.task_id = c.task_id
           RETURNING t.task_id, t.claim_id, t.job_id, t.stage, t.task_index, t.task_type, t.attempt, t.parameters, t.parameters_ref, t.lease_expires_at, t.limit_key, t.slot_claim),
           ${takeSlotsOf('claimed', '$5')}
           SELECT task_id, claim_id, job_id, stage, task_index, task_type, attempt, parameters, parameters_ref, lease_expires_at FROM claimed`,
    values: [request.taskTypes, request.limit, request.workerId, request.leaseSeconds, randomUUID()],
  });
  return result.rows;
}

/** An operator gives a remote claim up: the task is claimable again, with the release recorded as its error. */
export async function releaseRemoteClaim(db: Queryable, taskId: string): Promise<boolean> {
  const result = await db.query({
    name: 'cm_release_remote_claim',
    text: `WITH r AS (UPDATE coremachine.tasks SET status = 'QUEUED', claim_id = NULL, lease_expires_at = NULL, worker_id = NULL,
                  error = jsonb_build_object('type', 'ClaimReleasedError', 'message', 'claim released by an operator', 'taskId', task_id, 'stage', stage)
            WHERE task_id = $1 AND status = 'PROCESSING' AND remote
           RETURNING task_id, limit_key, slot_claim),
           ${freeSlotsOf('r')}
           SELECT task_id FROM r`,
    values: [taskId],
  });
  return (result.rowCount ?? 0) > 0;
}

/**
 * Claims up to `limit` QUEUED remote tasks of one type and slot key, oldest first: the claim of a
 * limited type, made while its key's lock is held (core/engine/limits.ts decides `limit`).
 */
export async function claimRemoteTasksOfKey(
  db: Queryable,
  request: { taskType: string; limitKey: string; defaultKey: string; leaseSeconds: number; limit: number; workerId: string },
): Promise<RemoteClaim[]> {
  if (request.limit <= 0) return [];
  const result = await db.query<RemoteClaim>({
    name: 'cm_claim_remote_tasks_of_key',
    text: `WITH candidates AS (
             SELECT t.task_id FROM coremachine.tasks t
               JOIN coremachine.jobs j ON j.job_id = t.job_id AND j.status = 'PROCESSING' AND j.stage = t.stage
              WHERE t.remote_queued_type = $1 AND COALESCE(t.limit_key, $6) = $2
                AND (t.retry_at IS NULL OR t.retry_at <= now())
              ORDER BY t.created_at, t.task_index LIMIT $3 FOR UPDATE OF t SKIP LOCKED),
           claimed AS (UPDATE coremachine.tasks t SET status = 'PROCESSING', attempt = t.attempt + 1, claim_id = gen_random_uuid(), limit_key = $2,
                  lease_expires_at = now() + make_interval(secs => $5::float8), started_at = now(), worker_id = $4,
                  slot_claim = ${slotClaimOf('$2', '$7')}
             FROM candidates c WHERE t.task_id = c.task_id
           RETURNING t.task_id, t.claim_id, t.job_id, t.stage, t.task_index, t.task_type, t.attempt, t.parameters, t.parameters_ref, t.lease_expires_at, t.limit_key, t.slot_claim),
           ${takeSlotsOf('claimed', '$7')}
           SELECT task_id, claim_id, job_id, stage, task_index, task_type, attempt, parameters, parameters_ref, lease_expires_at FROM claimed`,
    values: [request.taskType, request.limitKey, request.limit, request.workerId, request.leaseSeconds, request.defaultKey, randomUUID()],
  });
  return result.rows;
}
