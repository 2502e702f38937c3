import type pg from 'pg';
import { context } from '@opentelemetry/api';
import { contextFromTraceparent } from '../telemetry';
import type { JobEvent, JobQueueMessage, TaskQueueMessage } from '../../models';
import type { Queryable } from '../db/pool';
import { withTransaction } from '../db/pool';
import { deleteOutboxRows, insertOutboxRows, lockUndispatchedOutboxRows } from '../state/outbox-store';
import { queuedTaskPage } from '../state/tasks-store';
import type { StageTaskPage, Transport } from '../transport/transport';
import { dispatchSizeOf } from '../transport/task-packing';

/**
 * Transactional outbox. Intents are inserted in the transaction whose state change needs them and
 * dispatched after it commits; a row left behind by a crash is re-dispatched by `sweep`.
 * Re-sending is always safe: every consumer is idempotent (compare-and-set on the state).
 */
export type OutboxIntent =
  | { kind: 'job'; jobId: string; message: JobQueueMessage }
  | { kind: 'stage_tasks'; jobId: string; stage: number; taskType: string; resend?: string; chunk?: TaskIndexRange }
  | { kind: 'task'; jobId: string; message: TaskQueueMessage; notBefore?: Date }
  /** A job event for subscribers (models/job-event.ts), written with the transition it reports. */
  | { kind: 'event'; jobId: string; event: JobEvent };

/** The task indexes one committed chunk of a stage covers (both ends included). */
export interface TaskIndexRange {
  from: number;
  through: number;
}

interface RecordedIntent {
  id: string;
  intent: OutboxIntent;
  /** The job's trace context: its messages are sent under it. */
  traceparent: string | null;
}

export class Outbox {
  constructor(
    private readonly pool: pg.Pool,
    private readonly transport: Transport,
  ) {}

  /** Writes intents inside the caller's transaction. */
  async record(db: Queryable, intents: readonly OutboxIntent[]): Promise<RecordedIntent[]> {
    const rows = await insertOutboxRows(
      db,
      intents.map((intent) => ({
        kind: intent.kind,
        jobId: intent.jobId,
        payload: payloadOf(intent),
        notBefore: intent.kind === 'task' && intent.notBefore ? intent.notBefore : new Date(),
      })),
    );
    return rows.map((row, index) => ({ id: row.id, intent: intents[index] as OutboxIntent, traceparent: row.traceparent }));
  }

  /** After commit: sends, then deletes the rows. A failure leaves the rows for the sweep. */
  async dispatch(recorded: readonly RecordedIntent[]): Promise<void> {
    if (recorded.length === 0) return;
    await this.sendTraced(this.pool, recorded);
    await deleteOutboxRows(
      this.pool,
      recorded.map((r) => r.id),
    );
  }

  /**
   * Re-dispatches intents older than `olderThanMs` (their dispatcher crashed or failed).
   * SKIP LOCKED lets several sweepers run at once without sending the same row twice. Each job's
   * rows are sent on their own and deleted once sent: one failing send must not roll back the
   * progress of the others (with many rows pending, an all-or-nothing sweep would never drain).
   * Failures are rethrown after the progress is committed.
   */
  async sweep(olderThanMs: number, limit = 500): Promise<number> {
    const { sent, failures } = await withTransaction(this.pool, async (client) => {
      const due = await lockUndispatchedOutboxRows(client, olderThanMs, limit);
      const byJob = new Map<string, RecordedIntent[]>();
      for (const row of due) {
        const recorded = { id: row.id, intent: intentFromRow(row.kind, row.job_id, row.payload, row.not_before), traceparent: row.traceparent };
        const group = byJob.get(row.job_id);
        if (group) group.push(recorded);
        else byJob.set(row.job_id, [recorded]);
      }
      const sentIds: string[] = [];
      const failed: unknown[] = [];
      for (const group of byJob.values()) {
        try {
          await this.sendTraced(client, group);
          sentIds.push(...group.map((r) => r.id));
        } catch (error) {
          failed.push(error);
        }
      }
      await deleteOutboxRows(client, sentIds);
      return { sent: sentIds.length, failures: failed };
    });
    if (failures.length > 0) {
      throw new AggregateError(
        failures,
        `outbox sweep sent ${sent} message intent(s) but ${failures.length} job(s) failed to send; they stay for the next sweep`,
      );
    }
    return sent;
  }

  /** Sends each job's messages under that job's trace context, so transports stamp the right traceparent. */
  private async sendTraced(db: Queryable, recorded: readonly RecordedIntent[]): Promise<void> {
    const byTrace = new Map<string | null, OutboxIntent[]>();
    for (const r of recorded) {
      const group = byTrace.get(r.traceparent);
      if (group) group.push(r.intent);
      else byTrace.set(r.traceparent, [r.intent]);
    }
    for (const [traceparent, intents] of byTrace) {
      await context.with(contextFromTraceparent(traceparent ?? undefined), () => this.send(db, intents));
    }
  }

  /**
   * Every task of the stage that is still QUEUED, read and sent a page at a time: memory stays
   * flat however large the stage, and a re-dispatch sends only what has not run. A transport that
   * pulls (in-process) gets the cursor instead and reads pages from the pool as its queue drains;
   * the row is deleted once the stage is handed over, as it is once a durable transport has it.
   */
  private async sendStageTasks(db: Queryable, intent: Extract<OutboxIntent, { kind: 'stage_tasks' }>): Promise<void> {
    if (this.transport.pullStageTasks) {
      const pool = this.pool;
      await this.transport.pullStageTasks(intent, (afterIndex, limit) => readStageTaskPage(pool, intent, afterIndex, limit));
      return;
    }
    let afterIndex = (intent.chunk?.from ?? 0) - 1;
    for (;;) {
      const page = await readStageTaskPage(db, intent, afterIndex, DISPATCH_PAGE);
      if (page.messages.length === 0) return;
      await this.transport.sendTaskMessages(page.messages, dispatchSizeOf(intent));
      afterIndex = page.lastIndex;
      if (page.messages.length < DISPATCH_PAGE) return;
    }
  }

  private async send(db: Queryable, intents: readonly OutboxIntent[]): Promise<void> {
    const jobMessages: JobQueueMessage[] = [];
    const taskMessages: TaskQueueMessage[] = [];
    const events: JobEvent[] = [];
    for (const intent of intents) {
      if (intent.kind === 'job') jobMessages.push(intent.message);
      else if (intent.kind === 'event') events.push(intent.event);
      else if (intent.kind === 'task') {
        if (intent.notBefore && intent.notBefore.getTime() > Date.now()) {
          await this.transport.scheduleTaskMessages([intent.message], intent.notBefore);
        } else taskMessages.push(intent.message);
      } else await this.sendStageTasks(db, intent);
    }
    if (taskMessages.length > 0) await this.transport.sendTaskMessages(taskMessages);
    if (jobMessages.length > 0) await this.transport.sendJobMessages(jobMessages);
    // Last: the work's own messages never wait behind a slow subscriber.
    if (events.length > 0) await this.transport.publishEvents(events);
  }
}

const DISPATCH_PAGE = 5000;

function payloadOf(intent: OutboxIntent): unknown {
  if (intent.kind === 'job' || intent.kind === 'task') return intent.message;
  if (intent.kind === 'event') return intent.event;
  return {
    jobId: intent.jobId,
    stage: intent.stage,
    taskType: intent.taskType,
    ...(intent.resend ? { resend: intent.resend } : {}),
    ...(intent.chunk ? { chunk: intent.chunk } : {}),
  };
}

function intentFromRow(kind: OutboxIntent['kind'], jobId: string, payload: Record<string, unknown>, notBefore: Date): OutboxIntent {
  if (kind === 'job') return { kind, jobId, message: payload as JobQueueMessage };
  if (kind === 'task') return { kind, jobId, message: payload as TaskQueueMessage, notBefore };
  if (kind === 'event') return { kind, jobId, event: payload as JobEvent };
  const resend = typeof payload.resend === 'string' ? { resend: payload.resend } : {};
  const range = payload.chunk as Partial<TaskIndexRange> | undefined;
  const chunk = typeof range?.from === 'number' && typeof range.through === 'number' ? { chunk: { from: range.from, through: range.through } } : {};
  return { kind, jobId, stage: Number(payload.stage), taskType: String(payload.taskType), ...resend, ...chunk };
}

/** The stage a `stage_tasks` intent dispatches, and the resend tag that makes its messages new. */
export interface StageDispatch {
  jobId: string;
  stage: number;
  resend?: string;
  /** One chunk of the stage (its tasks were committed together); absent = the whole stage. */
  chunk?: { from: number; through: number };
}

/** One page of the stage's QUEUED queue-executed tasks after `afterIndex`, as task messages. */
export async function readStageTaskPage(db: Queryable, dispatch: StageDispatch, afterIndex: number, limit: number): Promise<StageTaskPage> {
  const page = await queuedTaskPage(db, dispatch.jobId, dispatch.stage, afterIndex, limit, dispatch.chunk?.through);
  return {
    messages: page.map((task) => ({
      taskId: task.task_id,
      jobId: dispatch.jobId,
      stage: dispatch.stage,
      taskType: task.task_type,
      attempt: task.attempt + 1,
      ...(dispatch.resend ? { resend: dispatch.resend } : {}),
    })),
    lastIndex: page[page.length - 1]?.task_index ?? afterIndex,
  };
}
