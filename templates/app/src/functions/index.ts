// The Azure Functions entry point: CoreMachine's HTTP API, queue triggers and janitor timer,
// serving this app's job types. Settings come from the app settings (DATABASE_URL,
// ServiceBusConnection…); options given here override them.
import { app } from '@azure/functions';
import { registerCoreMachine } from 'coremachine/azure-functions';
import { registration } from '../jobs';

registerCoreMachine(app, registration);
