import { randomUUID } from 'node:crypto';
import type { ErrorShape, ListTasksQuery } from '../../models';
import type { Queryable } from '../db/pool';
import type { PayloadRef } from '../payloads/payload-store';
import { boolArray, jsonArray, numberArray, textArray, timestampArray } from './pg-arrays';
import type { TaskRow } from './rows';
import { countSettledResultsOf, type StageCount } from './stages-store';
import { freeSlotsOf, slotClaimOf, takeSlotsOf } from './limit-slots-sql';
import type { TaskLogBatch } from './task-logs-store';

/** One statement for a whole stage: the task rows come from arrays, never a per-task INSERT. */
export async function insertStageTasks(
  db: Queryable,
  stage: {
    jobId: string;
    stage: number;
    taskType: string;
    remote: boolean;
    firstIndex: number;
    taskIds: readonly string[];
    /** Each task's parameters as JSON, or null where they are in the payload store (`parameterRefs`). */
    parameters: ReadonlyArray<string | null>;
    /** References of parameters in the payload store (migration 019); omitted when none of the chunk's are. */
    parameterRefs?: ReadonlyArray<PayloadRef | null>;
    /** Slot keys of a limited task type, one per task (migration 011); omitted without limits. */
    limitKeys?: ReadonlyArray<string | null>;
  },
): Promise<number> {
  if (stage.taskIds.length === 0) return 0;
  const result = await db.query({
    name: 'cm_insert_stage_tasks',
    // The parameters are one JSON array document (pg-arrays.ts), element i for task i.
    // A stored spec's reference replaces its value (NULL); $9 is NULL when the chunk has none.
    // A job's priority and fairness key are copied to its queue-executed, unlimited tasks: the ones
    // claimed by share (023_fair_share.sql); NULL for every other task, which keeps its updates heap-only.
    text: `INSERT INTO coremachine.tasks (task_id, job_id, stage, task_index, task_type, status, parameters, parameters_ref, remote, limit_key,
                                      fair_rank, fair_key, fair_weight)
           SELECT t.task_id, $1, $2, (t.ord - 1 + $7)::int, $3, 'QUEUED',
                  CASE WHEN r.ref IS NULL THEN $5::jsonb -> (t.ord::int - 1) END, r.ref, $6, t.limit_key,
                  CASE WHEN f.queued THEN f.fair_rank END, CASE WHEN f.queued THEN f.fair_key END, CASE WHEN f.queued THEN f.fair_weight END
             FROM unnest($4::text[], $8::text[]) WITH ORDINALITY AS t(task_id, limit_key, ord)
             CROSS JOIN LATERAL (SELECT NULLIF($9::jsonb -> (t.ord::int - 1), 'null'::jsonb) AS ref) r
             -- The job's row is read once per statement, not once per task.
             LEFT JOIN (SELECT fair_rank, fair_key, fair_weight FROM coremachine.jobs WHERE job_id = $1) j ON true
             CROSS JOIN LATERAL (SELECT NOT $6 AND t.limit_key IS NULL AS queued, j.fair_rank, j.fair_key, j.fair_weight) f`,
    values: [
      stage.jobId,
      stage.stage,
      stage.taskType,
      textArray(stage.taskIds),
      jsonArray(stage.parameters),
      stage.remote,
      stage.firstIndex,
      textArray(stage.limitKeys ?? []),
      stage.parameterRefs?.some((ref) => ref !== null) ? JSON.stringify(stage.parameterRefs) : null,
    ],
  });
  return result.rowCount ?? 0;
}

export interface ClaimRequest {
  taskId: string;
  attempt: number;
  /** A limited task's slot key, recorded by the claim (a task created before its type had limits has none). */
  limitKey?: string;
}

export type ClaimedTask = Pick<
  TaskRow,
  'task_id' | 'job_id' | 'stage' | 'task_index' | 'task_type' | 'parameters' | 'parameters_ref' | 'attempt' | 'limit_key'
> & {
  claim_id: string;
};

/**
 * Claims a batch in one statement. A task is claimable when it is QUEUED for this attempt, or
 * PROCESSING for this attempt with an expired lease (its worker died). Each claim gets a fresh
 * claim_id: completions must present it, so a zombie worker's late result is rejected.
 * Only tasks whose job is PROCESSING at that stage are claimed.
 */
export async function claimTasks(
  db: Queryable,
  requests: readonly ClaimRequest[],
  leaseSeconds: readonly number[],
  /** The claiming host (core/engine/host-presence.ts): the workers view counts the tasks it holds. */
  workerId: string | null = null,
): Promise<ClaimedTask[]> {
  if (requests.length === 0) return [];
  const result = await db.query<ClaimedTask>({
    name: 'cm_claim_tasks',
    // Rows are locked in task_id order (every multi-row task lock in the engine is), so two batches
    // holding duplicates of the same messages in different orders do not deadlock: the requests are
    // sorted, and the update's nested loop over them takes each row's lock as it updates it, with no
    // separate SELECT … FOR UPDATE (a second lookup and lock record per row). Should a plan ever visit the rows in another order (a hash join over
    // a nearly empty table), PostgreSQL detects the deadlock and the batch is retried (40P01 is
    // transient). Every lookup is by task id (primary key), never a scan of the stage; the job
    // check is a correlated subquery so no plan can start from the job's (job_id, stage) index.
    // A task with a slot key takes its slot in the same statement (029_limit_slot_tallies.sql); a
    // re-claim of an expired lease holds it already. Neither slot_claim nor the waiter mark is
    // indexed, and clearing the mark changes nothing for a task never deferred: the update stays HOT.
    text: `WITH m AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::int[], $3::float8[], $4::text[]) AS m(task_id, attempt, lease, limit_key) ORDER BY task_id),
           c AS (UPDATE coremachine.tasks t SET
             status = 'PROCESSING', attempt = m.attempt, claim_id = gen_random_uuid(),
             -- Taking over an expired lease at the same attempt: its host was lost, not its handler.
             lease_losses = t.lease_losses + (t.status = 'PROCESSING')::int,
             lease_expires_at = now() + make_interval(secs => m.lease), started_at = now(), limit_key = COALESCE(m.limit_key, t.limit_key), worker_id = $5,
             slot_waiter = NULL, slot_claim = ${slotClaimOf('COALESCE(m.limit_key, t.limit_key)', '$6')}
           FROM m
           WHERE t.task_id = m.task_id
             -- A task in the fair-share scheme is claimed by share, not by its own message (core/engine/fair-share.ts);
             -- a limited claim (its slot key given) takes it all the same (its type became limited after it was made).
             AND (t.fair_key IS NULL OR m.limit_key IS NOT NULL)
             AND ((t.status = 'QUEUED' AND t.attempt = m.attempt - 1)
               OR (t.status = 'PROCESSING' AND t.attempt = m.attempt AND t.lease_expires_at < now()))
             AND (SELECT j.status = 'PROCESSING' AND j.stage = t.stage
                         -- No handler starts past the job's or the stage's deadline (012_deadlines.sql).
                         AND COALESCE(LEAST(j.deadline_at, j.stage_deadline_at) > now(), true)
                    FROM coremachine.jobs j WHERE j.job_id = t.job_id)
           RETURNING t.task_id, t.job_id, t.stage, t.task_index, t.task_type, t.parameters, t.parameters_ref, t.attempt, t.claim_id, t.limit_key, t.slot_claim),
           ${takeSlotsOf('c', '$6')}
           SELECT task_id, job_id, stage, task_index, task_type, parameters, parameters_ref, attempt, claim_id, limit_key FROM c`,
    values: [
      textArray(requests.map((r) => r.taskId)),
      numberArray(requests.map((r) => r.attempt)),
      numberArray(leaseSeconds),
      textArray(requests.map((r) => r.limitKey ?? null)),
      workerId,
      randomUUID(),
    ],
  });
  return result.rows;
}

export type TaskState = Pick<TaskRow, 'task_id' | 'job_id' | 'stage' | 'status' | 'attempt'> & {
  lease_expired: boolean;
  /** In the fair-share scheme (023_fair_share.sql): its message claims by share. */
  fair: boolean;
};

export async function describeTasks(db: Queryable, taskIds: readonly string[]): Promise<TaskState[]> {
  if (taskIds.length === 0) return [];
  const result = await db.query<TaskState>({
    name: 'cm_describe_tasks',
    text: `SELECT task_id, job_id, stage, status, attempt, COALESCE(lease_expires_at < now(), false) AS lease_expired, fair_key IS NOT NULL AS fair
             FROM coremachine.tasks WHERE task_id = ANY($1::text[])`,
    values: [taskIds],
  });
  return result.rows;
}

/** The job type and version of each task's job: what decides whether this deployment can run it. */
export async function jobVersionsOfTasks(
  db: Queryable,
  taskIds: readonly string[],
): Promise<Array<{ task_id: string; job_type: string; job_version: number }>> {
  if (taskIds.length === 0) return [];
  const result = await db.query<{ task_id: string; job_type: string; job_version: number }>({
    name: 'cm_job_versions_of_tasks',
    text: `SELECT t.task_id, j.job_type, j.job_version
             FROM coremachine.tasks t JOIN coremachine.jobs j ON j.job_id = t.job_id
            WHERE t.task_id = ANY($1::text[])`,
    values: [taskIds],
  });
  return result.rows;
}

export interface TaskOutcome {
  taskId: string;
  /** The job, locked first when the outcome is committed (lock order: job → tasks → stage). */
  jobId: string;
  claimId: string;
  result?: unknown;
  /** `result` as JSON, when whoever produced it has serialised it already (so a big result is not serialised twice). */
  resultJson?: string;
  /** The result is in the payload store (core/payloads): only this reference is recorded, `result` stays NULL. */
  resultRef?: PayloadRef;
  error?: ErrorShape;
  /** With an error: the attempt failed but another is due at this time (task back to QUEUED). */
  retryAt?: Date;
  /** What the attempt logged (ctx.log, a remote worker's `logs`): written with the outcome, only when it settles. */
  logs?: TaskLogBatch;
}

export type SettledTask = Pick<TaskRow, 'task_id' | 'job_id' | 'stage' | 'status' | 'error' | 'attempt' | 'task_type' | 'remote' | 'retry_at'>;

/** What a settle changed: the tasks it settled, and the counts of each stage it counted results of. */
export interface Settled {
  tasks: SettledTask[];
  stages: StageCount[];
}

/**
 * Records results and failures of claimed tasks, and counts them into their stages, in one
 * statement. Fenced by claim_id: a claim that is no longer current (lease expired and re-claimed,
 * or task cancelled) changes nothing. Lock order: the task rows, then the stages' count shards.
 */
export async function settleTasks(db: Queryable, outcomes: readonly TaskOutcome[]): Promise<Settled> {
  if (outcomes.length === 0) return { tasks: [], stages: [] };
  const result = await db.query<SettledTask & { stage_count: StageCount | null }>({
    name: 'cm_settle_tasks',
    // Locked in task_id order by the update itself, as a claim is (see claimTasks: on a nearly empty
    // table the plan may visit rows in heap order, and a deadlock with a cancel is detected and
    // retried). An explicit ORDER BY … FOR UPDATE first would make the order certain at any size, but
    // cost 5% of throughput, 8% of PostgreSQL CPU and 49 WAL bytes per task (measured at N = 10,000).
    // Results and errors are JSON array documents (pg-arrays.ts), element ord - 1 for outcome ord.
    // Every outcome leaves PROCESSING, so a limited task's slot is freed in the same statement.
    text: `WITH o AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::uuid[], $5::bool[], $6::timestamptz[]) WITH ORDINALITY
                                        AS o(task_id, claim_id, failed, retry_at, ord) ORDER BY task_id),
           s AS (UPDATE coremachine.tasks t SET
             status = CASE WHEN o.retry_at IS NOT NULL THEN 'QUEUED' WHEN o.failed THEN 'FAILED' ELSE 'COMPLETED' END,
             -- A stored result's reference replaces its value; $7 is NULL when no outcome has one.
             result = CASE WHEN o.failed OR ($7::jsonb -> (o.ord::int - 1)) <> 'null'::jsonb THEN NULL ELSE $3::jsonb -> (o.ord::int - 1) END,
             result_ref = CASE WHEN o.failed THEN NULL ELSE NULLIF($7::jsonb -> (o.ord::int - 1), 'null'::jsonb) END,
             error = CASE WHEN o.failed THEN $4::jsonb -> (o.ord::int - 1) END,
             retry_at = o.retry_at,
             finished_at = CASE WHEN o.retry_at IS NOT NULL THEN NULL ELSE GREATEST(now(), t.started_at) END,
             claim_id = NULL, lease_expires_at = NULL
           FROM o
           WHERE t.task_id = o.task_id AND t.status = 'PROCESSING' AND t.claim_id = o.claim_id
           RETURNING t.task_id, t.job_id, t.stage, t.status, t.error, t.attempt, t.task_type, t.remote, t.retry_at, t.limit_key, t.slot_claim),
           ${freeSlotsOf('s')},
           ${countSettledResultsOf('s')}
           -- One result: a row per settled task and a row per counted stage (its task columns NULL), in no set order.
           SELECT task_id, job_id, stage, status, error, attempt, task_type, remote, retry_at, NULL::json AS stage_count FROM s
           UNION ALL
           SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, stage_count FROM stage_counts_seen`,
    values: [
      textArray(outcomes.map((o) => o.taskId)),
      textArray(outcomes.map((o) => o.claimId)),
      jsonArray(outcomes.map((o) => (o.error || o.resultRef ? null : (o.resultJson ?? JSON.stringify(o.result ?? null))))),
      jsonArray(outcomes.map((o) => (o.error ? JSON.stringify(o.error) : null))),
      boolArray(outcomes.map((o) => o.error !== undefined)),
      timestampArray(outcomes.map((o) => (o.error && o.retryAt ? o.retryAt : null))),
      outcomes.some((o) => o.resultRef && !o.error) ? jsonArray(outcomes.map((o) => (o.resultRef && !o.error ? JSON.stringify(o.resultRef) : null))) : null,
    ],
  });
  const settled: Settled = { tasks: [], stages: [] };
  for (const row of result.rows) {
    // A task row is kept as it came (its NULL stage_count too): no copy per settled task.
    if (row.stage_count === null) settled.tasks.push(row);
    else settled.stages.push(row.stage_count);
  }
  return settled;
}

/**
 * Takes over a task whose message was dead-lettered, so it can be settled FAILED through the
 * normal fenced path: a QUEUED task is claimed (QUEUED → PROCESSING), a PROCESSING one at this
 * attempt keeps its claim. The row must be the one the message describes (job, stage, task type
 * and attempt). Returns the claim to settle with, or null when the task moved on or never matched.
 */
export async function takeOverTask(
  db: Queryable,
  message: { taskId: string; jobId: string; stage: number; taskType: string; attempt: number },
): Promise<string | null> {
  const result = await db.query<{ claim_id: string }>({
    name: 'cm_take_over_task',
    text: `UPDATE coremachine.tasks SET
             status = 'PROCESSING', attempt = $2, started_at = COALESCE(started_at, now()),
             claim_id = CASE WHEN status = 'QUEUED' THEN gen_random_uuid() ELSE claim_id END,
             -- Taken over from QUEUED it holds no slot (and is settled FAILED in the same transaction);
             -- a running one keeps the slot it holds.
             slot_claim = CASE WHEN status = 'QUEUED' THEN NULL ELSE slot_claim END
           WHERE task_id = $1 AND job_id = $3 AND stage = $4 AND task_type = $5 AND NOT remote
             AND ((status = 'QUEUED' AND attempt = $2 - 1) OR (status = 'PROCESSING' AND attempt = $2))
           RETURNING claim_id`,
    values: [message.taskId, message.attempt, message.jobId, message.stage, message.taskType],
  });
  return result.rows[0]?.claim_id ?? null;
}

/** Extends a claim's lease; false when the claim is no longer current. */
export async function extendLease(db: Queryable, taskId: string, claimId: string, leaseSeconds: number): Promise<boolean> {
  const result = await db.query({
    name: 'cm_extend_lease',
    text: `UPDATE coremachine.tasks SET lease_expires_at = now() + make_interval(secs => $3)
           WHERE task_id = $1 AND claim_id = $2 AND status = 'PROCESSING'`,
    values: [taskId, claimId, leaseSeconds],
  });
  return result.rowCount === 1;
}

export type RequeuedTask = Pick<TaskRow, 'task_id' | 'job_id' | 'stage' | 'task_type' | 'attempt' | 'remote' | 'lease_losses'>;

/**
 * Lost leases (their host died or stopped renewing) that are not the task's fault: back to QUEUED
 * one attempt lower, as if never claimed, with the loss counted and explained in `error` (the
 * event trail shows it; a later success clears it). Fenced by claim, so a late renewal or result
 * of the old holder changes nothing.
 */
export async function requeueLostLeases(db: Queryable, lost: ReadonlyArray<{ taskId: string; claimId: string; error: ErrorShape }>): Promise<RequeuedTask[]> {
  if (lost.length === 0) return [];
  const result = await db.query<RequeuedTask>({
    name: 'cm_requeue_lost_leases',
    text: `WITH q AS (UPDATE coremachine.tasks t SET status = 'QUEUED', attempt = t.attempt - 1, lease_losses = t.lease_losses + 1,
                  claim_id = NULL, lease_expires_at = NULL, worker_id = NULL, error = $3::jsonb -> (c.ord::int - 1)
             FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS c(task_id, claim_id, ord)
            WHERE t.task_id = c.task_id AND t.claim_id = c.claim_id AND t.status = 'PROCESSING'
           RETURNING t.task_id, t.job_id, t.stage, t.task_type, t.attempt, t.remote, t.lease_losses, t.limit_key, t.slot_claim),
           ${freeSlotsOf('q')}
           SELECT task_id, job_id, stage, task_type, attempt, remote, lease_losses FROM q`,
    values: [textArray(lost.map((l) => l.taskId)), textArray(lost.map((l) => l.claimId)), jsonArray(lost.map((l) => JSON.stringify(l.error)))],
  });
  return result.rows;
}

/** Extends the leases of current claims in one statement; returns the task ids whose claim was still current. */
export async function extendLeases(db: Queryable, claims: ReadonlyArray<{ taskId: string; claimId: string; leaseSeconds: number }>): Promise<Set<string>> {
  if (claims.length === 0) return new Set();
  const result = await db.query<{ task_id: string }>({
    name: 'cm_extend_leases',
    text: `UPDATE coremachine.tasks t SET lease_expires_at = now() + make_interval(secs => c.lease)
             FROM unnest($1::text[], $2::uuid[], $3::float8[]) AS c(task_id, claim_id, lease)
            WHERE t.task_id = c.task_id AND t.claim_id = c.claim_id AND t.status = 'PROCESSING'
           RETURNING t.task_id`,
    values: [textArray(claims.map((c) => c.taskId)), textArray(claims.map((c) => c.claimId)), numberArray(claims.map((c) => c.leaseSeconds))],
  });
  return new Set(result.rows.map((row) => row.task_id));
}

/**
 * Gives up claims this process can no longer finish (a transient database fault): the task goes
 * back to QUEUED one attempt lower, as if never claimed, so the redelivered message claims it at
 * the same attempt. Merely expiring the lease would let a janitor sweep take it for a crashed
 * worker first, and a lost lease counts as an attempt.
 */
export async function releaseClaims(db: Queryable, claims: ReadonlyArray<{ taskId: string; claimId: string }>): Promise<void> {
  if (claims.length === 0) return;
  await db.query({
    name: 'cm_release_claims',
    text: `WITH r AS (UPDATE coremachine.tasks t SET status = 'QUEUED', attempt = t.attempt - 1, claim_id = NULL, lease_expires_at = NULL
           FROM unnest($1::text[], $2::uuid[]) AS c(task_id, claim_id)
           WHERE t.task_id = c.task_id AND t.claim_id = c.claim_id AND t.status = 'PROCESSING'
           RETURNING t.task_id, t.limit_key, t.slot_claim),
           ${freeSlotsOf('r')}
           SELECT count(*) FROM r`,
    values: [claims.map((c) => c.taskId), claims.map((c) => c.claimId)],
  });
}

/** One page of a stage's results in task order; callers page so memory stays flat in N. */
export async function readStageResultsPage(
  db: Queryable,
  jobId: string,
  stage: number,
  afterIndex: number,
  limit: number,
): Promise<Array<{ task_index: number; result: unknown; result_ref: PayloadRef | null }>> {
  const result = await db.query<{ task_index: number; result: unknown; result_ref: PayloadRef | null }>({
    name: 'cm_stage_results_page',
    text: `SELECT task_index, result, result_ref FROM coremachine.tasks
           WHERE job_id = $1 AND stage = $2 AND task_index > $3 AND status = 'COMPLETED'
           ORDER BY task_index LIMIT $4`,
    values: [jobId, stage, afterIndex, limit],
  });
  return result.rows;
}

/**
 * One page of a stage's QUEUED queue-executed tasks (remote ones are polled, not sent), in task
 * order, up to `throughIndex` when a dispatch covers one chunk of the stage.
 */
export async function queuedTaskPage(
  db: Queryable,
  jobId: string,
  stage: number,
  afterIndex: number,
  limit: number,
  throughIndex = 2_147_483_647,
): Promise<Array<{ task_id: string; task_type: string; attempt: number; task_index: number }>> {
  const result = await db.query<{ task_id: string; task_type: string; attempt: number; task_index: number }>({
    name: 'cm_queued_task_page',
    text: `SELECT task_id, task_type, attempt, task_index FROM coremachine.tasks
           WHERE job_id = $1 AND stage = $2 AND task_index > $3 AND task_index <= $5 AND status = 'QUEUED' AND NOT remote AND (retry_at IS NULL OR retry_at <= now())
           ORDER BY task_index LIMIT $4`,
    values: [jobId, stage, afterIndex, limit, throughIndex],
  });
  return result.rows;
}

/** The error of the stage's first failed task: why a stage over its tolerance fails its job. */
export async function firstTaskError(db: Queryable, jobId: string, stage: number): Promise<{ task_id: string; error: ErrorShape | null } | null> {
  const result = await db.query<{ task_id: string; error: ErrorShape | null }>({
    name: 'cm_first_task_error',
    text: `SELECT task_id, error FROM coremachine.tasks WHERE job_id = $1 AND stage = $2 AND status = 'FAILED' ORDER BY task_index LIMIT 1`,
    values: [jobId, stage],
  });
  return result.rows[0] ?? null;
}

/** A page of a job's tasks, each with its log counts (migration 021) when it has logged. */
export async function listTasks(db: Queryable, jobId: string, query: ListTasksQuery): Promise<TaskRow[]> {
  const result = await db.query<TaskRow>(
    `SELECT t.*, lc.lines AS log_lines, lc.dropped AS logs_dropped FROM coremachine.tasks t
       LEFT JOIN coremachine.task_log_counts lc ON lc.task_id = t.task_id
      WHERE t.job_id = $1 AND ($2::int IS NULL OR t.stage = $2) AND ($3::text IS NULL OR t.status = $3)
        AND (t.stage, t.task_index) > (COALESCE($2::int, 0), $4::int)
      ORDER BY t.stage, t.task_index LIMIT $5`,
    [jobId, query.stage ?? null, query.status ?? null, query.afterIndex, query.limit],
  );
  return result.rows;
}

/**
 * Cancel, fail or time out: the job's pending and running tasks CANCELLED, locked in task_id order. A task that
 * never started keeps started_at NULL; now() is this transaction's start and a claim that
 * committed while this one waited for the row lock started later, so GREATEST keeps finished_at
 * from preceding started_at. Returns which tasks were running (their handlers are aborted).
 */
export async function cancelOpenTasks(db: Queryable, jobId: string): Promise<Array<{ task_id: string; was_running: boolean }>> {
  const result = await db.query<{ task_id: string; was_running: boolean }>({
    name: 'cm_cancel_job_tasks',
    text: `WITH old AS MATERIALIZED (SELECT task_id, status FROM coremachine.tasks WHERE job_id = $1 AND status IN ('QUEUED','PROCESSING') ORDER BY task_id FOR UPDATE),
           x AS (UPDATE coremachine.tasks t SET status = 'CANCELLED', finished_at = GREATEST(now(), t.started_at), claim_id = NULL, lease_expires_at = NULL,
                  slot_waiter = NULL
             FROM old WHERE t.task_id = old.task_id
           RETURNING t.task_id, old.status = 'PROCESSING' AS was_running, t.limit_key,
                     -- Only a running task holds its slot: a QUEUED one may still name the slot claim
                     -- of an earlier claim, whose requeue freed it already.
                     CASE WHEN old.status = 'PROCESSING' THEN t.slot_claim END AS slot_claim),
           ${freeSlotsOf('x')}
           SELECT task_id, was_running FROM x`,
    values: [jobId],
  });
  return result.rows;
}

/** Operator retry: the stage's FAILED and CANCELLED tasks back to QUEUED; returns how many were FAILED. */
export async function requeueStoppedTasks(db: Queryable, jobId: string, stage: number): Promise<number> {
  const result = await db.query<{ was_failed: boolean }>({
    name: 'cm_retry_job_tasks',
    text: `WITH old AS MATERIALIZED (SELECT task_id, status FROM coremachine.tasks WHERE job_id = $1 AND stage = $2 AND status IN ('FAILED','CANCELLED') ORDER BY task_id FOR UPDATE)
           UPDATE coremachine.tasks t SET status = 'QUEUED', started_at = NULL, finished_at = NULL, retry_at = NULL, claim_id = NULL, lease_expires_at = NULL
             FROM old WHERE t.task_id = old.task_id
           RETURNING old.status = 'FAILED' AS was_failed`,
    values: [jobId, stage],
  });
  return result.rows.filter((row) => row.was_failed).length;
}

/** The job's FAILED tasks in stage and task order, at most `limit` (for a COMPLETED_WITH_ERRORS record). */
export async function listFailedTasks(db: Queryable, jobId: string, limit: number): Promise<Array<Pick<TaskRow, 'task_id' | 'stage' | 'error'>>> {
  const result = await db.query<Pick<TaskRow, 'task_id' | 'stage' | 'error'>>({
    name: 'cm_failed_tasks_of_job',
    text: `SELECT task_id, stage, error FROM coremachine.tasks WHERE job_id = $1 AND status = 'FAILED' ORDER BY stage, task_index LIMIT $2`,
    values: [jobId, limit],
  });
  return result.rows;
}

export type TaskSummary = Pick<TaskRow, 'task_type' | 'job_id' | 'attempt' | 'stage' | 'worker_id'>;

export async function findTaskSummary(db: Queryable, taskId: string): Promise<TaskSummary | null> {
  const result = await db.query<TaskSummary>({
    name: 'cm_find_task_summary',
    text: 'SELECT task_type, job_id, attempt, stage, worker_id FROM coremachine.tasks WHERE task_id = $1',
    values: [taskId],
  });
  return result.rows[0] ?? null;
}
