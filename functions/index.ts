// The Functions app's entry point, written as any app that installs CoreMachine writes it: this
// repository's job types (jobs/index.ts) registered through the package's public entry point.
// The other files of functions/ only export handlers and route tables, so the host can load every
// dist/functions/*.js (package.json "main") without registering anything twice.
import { app } from '@azure/functions';
import { registerCoreMachine } from 'coremachine/azure-functions';
import { registration } from '../jobs';

registerCoreMachine(app, registration);
