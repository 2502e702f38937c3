/**
 * What the Functions app registers must match what the Bicep deploys: every queue a trigger
 * listens on (dead-letter sub-queues included) exists in the template, every trigger uses the
 * connection setting the template configures, and the janitor's schedule setting is provided by
 * the template and the local settings example.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { app } from '@azure/functions';
import { SERVICE_BUS_CONNECTION_SETTING } from '../core/transport/service-bus-transport';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));
// eslint-disable-next-line @typescript-eslint/no-require-imports -- registration happens on import, after the mock
require('../functions/index');

const root = path.resolve(__dirname, '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8').replace(/\/\/.*$/gm, '');
const bicepQueues = [...(/var serviceBusQueueNames = \[([\s\S]*?)\]/.exec(read('infra/main.bicep'))?.[1] ?? '').matchAll(/'([^']+)'/g)].map((m) => m[1]);
const appSettings = read('infra/modules/functionapp.bicep');
const localSettings = (JSON.parse(readFileSync(path.join(root, 'infra/local.settings.example.json'), 'utf8')) as { Values: Record<string, string> }).Values;

test('every Service Bus trigger listens on a queue the Bicep creates, through the configured connection', () => {
  const triggers = jest.mocked(app.serviceBusQueue).mock.calls.map(([name, options]) => ({ name, options }));
  expect(triggers.length).toBe(6);
  for (const { options } of triggers) {
    expect(bicepQueues).toContain(options.queueName.replace(/\/\$deadletterqueue$/, ''));
    expect(options.connection).toBe(SERVICE_BUS_CONNECTION_SETTING);
  }
  // Every deployed queue has a consumer, and so does its dead-letter sub-queue (submissions' too).
  const listened = new Set(triggers.map(({ options }) => options.queueName));
  for (const queue of bicepQueues) {
    expect(listened).toContain(queue);
    expect(listened).toContain(`${queue}/$deadletterqueue`);
  }
  expect(appSettings).toContain(`name: '${SERVICE_BUS_CONNECTION_SETTING}__fullyQualifiedNamespace'`);
});

test('the janitor timer schedule comes from an app setting that the Bicep and the local example provide', () => {
  const [[name, options]] = jest.mocked(app.timer).mock.calls as unknown as [[string, { schedule: string }]];
  expect(name).toBe('janitor');
  const setting = /^%(\w+)%$/.exec(options.schedule)?.[1];
  expect(setting).toBe('JANITOR_SCHEDULE');
  expect(appSettings).toMatch(/name: 'JANITOR_SCHEDULE', value: '[0-9*/ ]+'/);
  expect(localSettings.JANITOR_SCHEDULE).toMatch(/^[0-9*/ ]+$/);
});

test('HTTP routes: every route but health needs the function key', () => {
  const routes = jest.mocked(app.http).mock.calls.map(([name, options]) => [name, (options as { authLevel: string }).authLevel]);
  expect(routes.filter(([, level]) => level !== 'function')).toEqual([['health', 'anonymous']]);
});

test('every always-ready entry in the Bicep names a trigger the app registers, as Flex names non-HTTP functions', () => {
  // `function:<name>` for a non-HTTP function, `http` for the HTTP group:
  // https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#set-always-ready-instance-counts
  const main = read('infra/main.bicep');
  const candidates = /^var alwaysReadyCandidates = \[\n([\s\S]*?)^\]/m.exec(main)?.[1] ?? '';
  const names = [...candidates.matchAll(/name: '([^']+)'/g)].map((m) => m[1]);
  const registered = [...jest.mocked(app.serviceBusQueue).mock.calls, ...jest.mocked(app.timer).mock.calls].map(([name]) => `function:${name}`);
  expect(names).toEqual(['function:jobs-queue', 'function:tasks-queue']);
  for (const name of names) expect(registered).toContain(name);
  // Each entry's count is its own parameter, and only counts above 0 reach the app.
  expect(candidates).toMatch(/\{ name: 'function:jobs-queue', instanceCount: alwaysReadyJobs \}/);
  expect(candidates).toMatch(/\{ name: 'function:tasks-queue', instanceCount: alwaysReadyTasks \}/);
});
