import type pg from 'pg';
import type { TaskContext } from '../../models';
import { retryTransient } from '../db/retry-transient';
import { extendLease, type ClaimedTask } from '../state/tasks-store';
import type { TaskAbort } from './running-tasks';

/**
 * What a handler gets besides its parameters. A class, not an object literal: a literal with a
 * getter and a heartbeat closure allocated both for every task, and most handlers use neither.
 * `signal` and `heartbeat` are getters, so destructuring them (`{ signal, heartbeat }`) works:
 * the heartbeat is a function bound to its task, made on first read.
 */
export class HandlerContext implements TaskContext {
  readonly jobId: string;
  readonly taskId: string;
  readonly stage: number;
  readonly taskIndex: number;
  readonly attempt: number;
  private boundHeartbeat: (() => Promise<void>) | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly task: ClaimedTask,
    private readonly leaseSeconds: number,
    private readonly controller: TaskAbort,
  ) {
    this.jobId = task.job_id;
    this.taskId = task.task_id;
    this.stage = task.stage;
    this.taskIndex = task.task_index;
    this.attempt = task.attempt;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get heartbeat(): () => Promise<void> {
    this.boundHeartbeat ??= () => this.extendLease();
    return this.boundHeartbeat;
  }

  /**
   * A heartbeat that cannot reach the database after the retries throws TransientDatabaseError;
   * the task's run gives the task back instead of failing it. A lease found lost aborts the signal.
   */
  private async extendLease(): Promise<void> {
    const { task } = this;
    if (!(await retryTransient(() => extendLease(this.pool, task.task_id, task.claim_id, this.leaseSeconds)))) {
      this.controller.abort(new Error(`lease on task ${task.task_id} was lost`));
    }
  }
}
