import { defineRegistration } from 'coremachine';
import { wordReport } from './word-report';

/**
 * The app's job types and schedules, in one place: the Functions app (src/functions/index.ts),
 * `coremachine dev` (package.json "coremachine.registration") and the tests all run this.
 */
export const registration = defineRegistration({
  jobs: [wordReport],
  schedules: [],
});
