import type pg from 'pg';
import type { TaskContext, TaskLogLevel } from '../../models';
import { retryTransient } from '../db/retry-transient';
import type { Logger } from '../logger';
import type { TaskLogBatch } from '../state/task-logs-store';
import { extendLease, type ClaimedTask } from '../state/tasks-store';
import { emitTaskLog } from '../telemetry';
import type { TaskAbort } from './running-tasks';
import { boundedLogLine, TaskLogBuffer } from './task-log-buffer';

/**
 * What a handler gets besides its parameters. A class, not an object literal: a literal with a
 * getter and a heartbeat closure allocated both for every task, and most handlers use neither.
 * `signal`, `heartbeat` and `log` are getters, so destructuring them (`{ signal, heartbeat, log }`)
 * works: heartbeat and log are functions bound to their task, made on first read.
 */
export class HandlerContext implements TaskContext {
  readonly jobId: string;
  readonly taskId: string;
  readonly stage: number;
  readonly taskIndex: number;
  readonly attempt: number;
  private boundHeartbeat: (() => Promise<void>) | undefined;
  private boundLog: TaskContext['log'] | undefined;
  /** Made on the first line: a handler that never logs allocates nothing for it, and its commit runs no log statement. */
  private logBuffer: TaskLogBuffer | undefined;
  /** Set once the outcome took the lines: a line logged later (by work the handler left running) is only mirrored. */
  private logsTaken = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly task: ClaimedTask,
    private readonly leaseSeconds: number,
    private readonly controller: TaskAbort,
    private readonly logger: Logger,
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

  get log(): TaskContext['log'] {
    this.boundLog ??= (level, message, fields) => this.writeLog(level, message, fields);
    return this.boundLog;
  }

  /** The attempt's lines for its outcome, once; undefined when it logged nothing. */
  takeLogs(): TaskLogBatch | undefined {
    this.logsTaken = true;
    return this.logBuffer?.batch();
  }

  /**
   * Buffered for the outcome, and mirrored as it is logged: to the engine's log, and to Application
   * Insights as a trace in the task's operation (the task span is the active context here).
   */
  private writeLog(level: TaskLogLevel, message: string, fields: Record<string, unknown> | undefined): void {
    const { task } = this;
    const line = this.logsTaken ? boundedLogLine(level, message, fields, new Date()) : (this.logBuffer ??= new TaskLogBuffer()).add(level, message, fields);
    const where = { jobId: task.job_id, taskId: task.task_id, stage: task.stage, attempt: task.attempt, taskType: task.task_type };
    this.logger[line.level](line.message, {
      origin: 'task',
      ...where,
      ...(line.fieldsJson === null ? {} : { fields: JSON.parse(line.fieldsJson) as unknown }),
    });
    emitTaskLog(line.level, line.message, line.fieldsJson === null ? where : { ...where, fields: line.fieldsJson });
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
