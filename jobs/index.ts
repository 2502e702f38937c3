import type { AnyJobDefinition } from '../models';
import { helloWorld } from './hello-world';
import { wordFrequencies } from './word-frequencies';
import { exampleSchedules } from './schedules';

/** The job types this app ships with; register your own the same way. */
export const exampleJobs: AnyJobDefinition[] = [helloWorld, wordFrequencies];

/** Registered after the jobs (`registry.registerSchedule(...exampleSchedules)`): each names a job type. */
export { exampleSchedules };

export { helloWorld, wordFrequencies };
