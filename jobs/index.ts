import type { AnyJobDefinition } from '../models';
import { helloWorld } from './hello-world';
import { wordFrequencies } from './word-frequencies';

/** The job types this app ships with; register your own the same way. */
export const exampleJobs: AnyJobDefinition[] = [helloWorld, wordFrequencies];

export { helloWorld, wordFrequencies };
