import { Registry } from '../core/registry';
import { TaskFailure, type AnyTaskDefinition, type Registration, type TaskContext } from '../models';

/** What failTask throws, and how often. */
export interface FailTaskOptions {
  /**
   * How many runs of the task type fail, counted across all its tasks in the order they run;
   * `Infinity` fails every run until restored.
   * @default 1
   */
  times?: number;
  /**
   * What the handler throws instead of running: a value (an Error, a TaskFailure…), or a function
   * of the run (FailedRun) that returns it.
   * @default a retryable TaskFailure with retryAfterMs 0 (the task type's retry policy decides
   * whether there is another attempt; if so it comes at once, not after the backoff)
   */
  error?: unknown;
}

/** The run a failTask `error` function is asked about. */
export interface FailedRun {
  jobId: string;
  taskId: string;
  attempt: number;
  parameters: unknown;
}

/** One failTask injection: how many runs it failed so far; restore() lets the handler run again. */
export interface InjectedFailure {
  readonly taskType: string;
  /** Runs failed so far. */
  readonly failures: number;
  /** Runs still to fail. */
  readonly remaining: number;
  restore(): void;
}

interface Fault {
  remaining: number;
  failures: number;
  times: number;
  error: unknown;
}

/**
 * A registry whose task handlers can be made to fail: the engine asks the registry for a task's
 * definition each time it runs one, and gets the definition with its handler wrapped while a
 * failure is injected. The registration's own definitions are never changed.
 */
export class FaultRegistry extends Registry {
  private readonly faults = new Map<string, Fault>();
  private readonly wrapped = new Map<string, AnyTaskDefinition>();

  static of(registration: Registration): FaultRegistry {
    return new FaultRegistry().register(...registration.jobs).registerSchedule(...registration.schedules);
  }

  inject(taskType: string, options: FailTaskOptions = {}): InjectedFailure {
    const definition = super.task(taskType);
    if (definition.execution === 'remote') {
      throw new TypeError(`task type "${taskType}" is remote: its handler runs in an outside worker, which reports the failure itself`);
    }
    const times = options.times ?? 1;
    if (!(times === Infinity || (Number.isInteger(times) && times >= 1)))
      throw new TypeError(`failTask: times must be an integer ≥ 1 or Infinity, got ${times}`);
    const fault: Fault = { remaining: times, failures: 0, times, error: options.error };
    this.faults.set(taskType, fault);
    const faults = this.faults;
    return {
      taskType,
      get failures() {
        return fault.failures;
      },
      get remaining() {
        return fault.remaining;
      },
      restore: () => {
        if (faults.get(taskType) === fault) faults.delete(taskType);
      },
    };
  }

  override task(taskType: string): AnyTaskDefinition {
    const definition = super.task(taskType);
    if (!this.faults.has(taskType)) return definition;
    let wrapped = this.wrapped.get(taskType);
    if (!wrapped) {
      wrapped = { ...definition, handler: (parameters: unknown, context: TaskContext) => this.run(definition, parameters, context) };
      this.wrapped.set(taskType, wrapped);
    }
    return wrapped;
  }

  private run(definition: AnyTaskDefinition, parameters: unknown, context: TaskContext): Promise<unknown> {
    const fault = this.faults.get(definition.type);
    if (!fault || fault.remaining <= 0) return definition.handler(parameters, context);
    fault.remaining--;
    fault.failures++;
    const { error } = fault;
    /* eslint-disable @typescript-eslint/prefer-promise-reject-errors -- what the test chose to throw, as a handler may throw anything */
    if (typeof error === 'function') {
      const make = error as (run: FailedRun) => unknown;
      return Promise.reject(make({ jobId: context.jobId, taskId: context.taskId, attempt: context.attempt, parameters }));
    }
    if (error !== undefined) return Promise.reject(error);
    /* eslint-enable @typescript-eslint/prefer-promise-reject-errors */
    const count = fault.times === Infinity ? `${fault.failures}` : `${fault.failures} of ${fault.times}`;
    return Promise.reject(new TaskFailure(`failure injected by coremachine/testing (${count}) into task ${context.taskId}`, { retryAfterMs: 0 }));
  }
}
