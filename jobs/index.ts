import { defineRegistration } from 'coremachine';
import { approvedPublish } from './approved-publish';
import { helloWorld } from './hello-world';
import { helloWorldHourly } from './schedules';
import { wordFrequencies } from './word-frequencies';

/**
 * The one registration point: the job types and schedules this app ships with. The Functions app
 * (functions/index.ts), the CLI (`coremachine dev`, `demo`) and the tests build their registry from
 * this. Add your own job type or schedule here, next to the examples.
 */
export const registration = defineRegistration({
  jobs: [helloWorld, wordFrequencies, approvedPublish],
  schedules: [helloWorldHourly],
});

export { approvedPublish, helloWorld, helloWorldHourly, wordFrequencies };
