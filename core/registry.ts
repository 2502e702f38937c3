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
import { DuplicateRegistrationError, ScheduleNotFoundError, UnknownJobTypeError, UnknownTaskTypeError, parseOrThrow, refuseUnstorable } from './errors';

/** Maps type names to definitions. Job types in jobs/ reach the engine only through here. */
export class Registry {
  private readonly jobs = new Map<string, AnyJobDefinition>();
  private readonly tasks = new Map<string, AnyTaskDefinition>();
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
      const existing = this.jobs.get(job.type);
      if (existing && existing !== job) {
        throw new DuplicateRegistrationError(`job type "${job.type}" is already registered`);
      }
      // A stage waiting for a signal has no task type to register.
      for (const stage of job.stages) if (!isSignalStage(stage)) this.registerTask(stage.task);
      this.jobs.set(job.type, job);
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
    return this;
  }

  /** The global concurrency/rate limits of a task type; undefined when it has none (or is unknown). */
  limitsOf(taskType: string): TaskLimits | undefined {
    const task = this.tasks.get(taskType);
    return task ? taskLimitsOf(task) : undefined;
  }

  job(jobType: string): AnyJobDefinition {
    const job = this.jobs.get(jobType);
    if (!job) throw new UnknownJobTypeError(jobType, this.jobTypes());
    return job;
  }

  task(taskType: string): AnyTaskDefinition {
    const task = this.tasks.get(taskType);
    if (!task) throw new UnknownTaskTypeError(taskType, [...this.tasks.keys()]);
    return task;
  }

  hasJob(jobType: string): boolean {
    return this.jobs.has(jobType);
  }

  hasTask(taskType: string): boolean {
    return this.tasks.has(taskType);
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
