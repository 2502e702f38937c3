import type { AnyJobDefinition, AnyTaskDefinition } from '../models';
import { DuplicateRegistrationError, UnknownJobTypeError, UnknownTaskTypeError } from './errors';

/** Maps type names to definitions. Job types in jobs/ reach the engine only through here. */
export class Registry {
  private readonly jobs = new Map<string, AnyJobDefinition>();
  private readonly tasks = new Map<string, AnyTaskDefinition>();

  register(...jobs: AnyJobDefinition[]): this {
    for (const job of jobs) {
      const existing = this.jobs.get(job.type);
      if (existing && existing !== job) {
        throw new DuplicateRegistrationError(`job type "${job.type}" is already registered`);
      }
      for (const stage of job.stages) this.registerTask(stage.task);
      this.jobs.set(job.type, job);
    }
    return this;
  }

  registerTask(task: AnyTaskDefinition): this {
    const existing = this.tasks.get(task.type);
    if (existing && existing !== task) {
      throw new DuplicateRegistrationError(`task type "${task.type}" is already registered with another definition`);
    }
    this.tasks.set(task.type, task);
    return this;
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
}
