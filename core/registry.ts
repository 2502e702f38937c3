import {
  checkTaskLimits,
  isSignalStage,
  sameLimits,
  taskLimitsOf,
  type AnyJobDefinition,
  type AnyTaskDefinition,
  type Registration,
  type ScheduleDefinition,
  type TaskLimits,
} from '../models';
import { compileSchedule, type RegisteredSchedule } from './schedules/cron-pattern';
import {
  DuplicateRegistrationError,
  ScheduleNotFoundError,
  UnknownJobTypeError,
  UnknownJobVersionError,
  UnknownTaskTypeError,
  parseOrThrow,
  refuseUnstorable,
} from './errors';

/**
 * Maps type names to definitions. Job types in jobs/ reach the engine only through here. A job
 * type may be registered in several versions at once (a job runs the version it was submitted
 * under); a task type has one definition, shared by every version whose stages use it, so a
 * version that changes a task's parameters or handler gives that task a new type name.
 */
export class Registry {
  /** Each job type's versions, newest last. */
  private readonly jobs = new Map<string, AnyJobDefinition[]>();
  private readonly tasks = new Map<string, AnyTaskDefinition>();
  /** Each registered type's limits, worked out once: every message of a batch asks for them. */
  private readonly limits = new Map<string, TaskLimits>();
  /** Each declared schedule (kept to spot a second definition of a name) and its compiled form. */
  private readonly scheduleMap = new Map<string, { declared: ScheduleDefinition; compiled: RegisteredSchedule }>();

  /**
   * A registry of an app's Registration (jobs/index.ts), plus any extra job types and schedules a
   * test or a custom entry point adds on top. Jobs first: every schedule is checked against them.
   */
  static from(registration: Registration, extra: Partial<Registration> = {}): Registry {
    return new Registry().register(...registration.jobs, ...(extra.jobs ?? [])).registerSchedule(...registration.schedules, ...(extra.schedules ?? []));
  }

  register(...jobs: AnyJobDefinition[]): this {
    for (const job of jobs) {
      const versions = this.jobs.get(job.type) ?? [];
      const existing = versions.find((registered) => registered.version === job.version);
      if (existing === job) continue;
      if (existing) throw new DuplicateRegistrationError(`version ${job.version} of job type "${job.type}" is already registered`);
      // A stage waiting for a signal has no task type to register.
      for (const stage of job.stages) if (!isSignalStage(stage)) this.registerTask(stage.task);
      this.jobs.set(
        job.type,
        [...versions, job].sort((a, b) => a.version - b.version),
      );
    }
    return this;
  }

  registerTask(task: AnyTaskDefinition): this {
    const existing = this.tasks.get(task.type);
    if (existing && existing !== task) {
      throw new DuplicateRegistrationError(`task type "${task.type}" is already registered with another definition`);
    }
    // Checked again here: a definition built by hand (not by defineTask) reaches the engine too.
    checkTaskLimits(task.type, task.concurrency, task.rate);
    const limits = taskLimitsOf(task);
    if (limits) {
      // One scope is one set of slots: types sharing it must agree on them, or the limit enforced
      // would depend on which type's message happened to be claimed.
      const other = [...this.tasks.values()].find((t) => t.type !== task.type && taskLimitsOf(t)?.scope === limits.scope);
      const otherLimits = other ? taskLimitsOf(other) : undefined;
      if (other && otherLimits && !sameLimits(limits, otherLimits)) {
        throw new DuplicateRegistrationError(
          `task type "${task.type}" declares limits ${JSON.stringify(limits)} for scope "${limits.scope}", but task type "${other.type}" declares ${JSON.stringify(otherLimits)}`,
        );
      }
    }
    this.tasks.set(task.type, task);
    if (limits) this.limits.set(task.type, limits);
    return this;
  }

  /** The global concurrency/rate limits of a task type; undefined when it has none (or is unknown). */
  limitsOf(taskType: string): TaskLimits | undefined {
    return this.limits.get(taskType);
  }

  /** The given version of a job type, or its newest: what a new submission runs. */
  job(jobType: string, version?: number): AnyJobDefinition {
    const versions = this.jobs.get(jobType);
    if (!versions) throw new UnknownJobTypeError(jobType, this.jobTypes());
    if (version === undefined) return versions[versions.length - 1] as AnyJobDefinition;
    const job = versions.find((registered) => registered.version === version);
    if (!job) throw new UnknownJobVersionError(jobType, version, this.versionsOf(jobType));
    return job;
  }

  /** The versions of a job type this registry holds, oldest first; empty for an unknown type. */
  versionsOf(jobType: string): number[] {
    return (this.jobs.get(jobType) ?? []).map((job) => job.version);
  }

  task(taskType: string): AnyTaskDefinition {
    const task = this.tasks.get(taskType);
    if (!task) throw new UnknownTaskTypeError(taskType, [...this.tasks.keys()]);
    return task;
  }

  /** Whether the job type (and, if given, that version of it) is registered. */
  hasJob(jobType: string, version?: number): boolean {
    const versions = this.jobs.get(jobType);
    return versions !== undefined && (version === undefined || versions.some((job) => job.version === version));
  }

  hasTask(taskType: string): boolean {
    return this.tasks.has(taskType);
  }

  /** The registered task types that run this way (the tasks queue, or remote workers over HTTP), sorted. */
  taskTypes(execution: 'queue' | 'remote'): string[] {
    return [...this.tasks.values()]
      .filter((task) => (task.execution ?? 'queue') === execution)
      .map((task) => task.type)
      .sort();
  }

  jobTypes(): string[] {
    return [...this.jobs.keys()].sort();
  }

  /**
   * Schedules are checked here, after the jobs: a cron croner refuses, an unknown job type or
   * parameters the type rejects fail at startup, not at 2 a.m. on the first tick.
   */
  registerSchedule(...schedules: ScheduleDefinition[]): this {
    for (const schedule of schedules) {
      const existing = this.scheduleMap.get(schedule.name);
      if (existing && existing.declared !== schedule) throw new DuplicateRegistrationError(`schedule "${schedule.name}" is already registered`);
      const compiled = existing?.compiled ?? compileSchedule(schedule);
      const parameters = parseOrThrow(
        this.job(schedule.jobType).parameters,
        schedule.parameters,
        `parameters of schedule "${schedule.name}" for job type "${schedule.jobType}"`,
      );
      refuseUnstorable(`parameters of schedule "${schedule.name}"`, parameters);
      this.scheduleMap.set(schedule.name, { declared: schedule, compiled });
    }
    return this;
  }

  schedule(name: string): RegisteredSchedule {
    const schedule = this.scheduleMap.get(name);
    if (!schedule) throw new ScheduleNotFoundError(name, [...this.scheduleMap.keys()].sort());
    return schedule.compiled;
  }

  /** Declared schedules, by name. */
  schedules(): RegisteredSchedule[] {
    return [...this.scheduleMap.values()].map((entry) => entry.compiled).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
