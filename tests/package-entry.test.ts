/**
 * The package's public entry points as an app uses them: registerCoreMachine registers every
 * function of the Functions app with the app's own registration and options (options over app
 * settings, a wrong one refused by its name), createCoreMachine runs jobs in a Node process, and
 * every `@default` the option types document is the default the settings schema applies.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import {
  createCoreMachine,
  defineJob,
  defineRegistration,
  defineSchedule,
  defineTask,
  DuplicateRegistrationError,
  UnknownJobTypeError,
  type JobEvent,
} from 'coremachine';
import { registerCoreMachine, type FunctionsHostApp } from 'coremachine/azure-functions';
import { registeredFunctions } from '../bin/cli/function-groups';
import { loadConfig } from '../core/config';
import { SETTING_VARIABLES } from '../core/config-options';
import { createScratchDatabase, type ScratchDatabase } from '../core/db/test-databases';
import { migrate } from '../core/db/migrator';
import { createPool } from '../core/db/pool';
import { InProcessTransport } from '../core/transport/in-process-transport';
import { closeAppContext, getAppContext, loadAppConfig, setTransportFactory } from '../functions/app-context';
import { registration as shipped } from '../jobs';

const root = path.resolve(__dirname, '..');
const echo = defineTask({ type: 'entry.echo', parameters: z.object({ word: z.string() }), handler: ({ word }) => Promise.resolve({ word }) });
const echoJob = defineJob({ type: 'entry.echo_job', parameters: z.object({ words: z.array(z.string()) }) })
  .stage({ name: 'echo', task: echo, fanOut: ({ parameters }) => parameters.words.map((word) => ({ word })) })
  .finalize(async ({ previous }) => ({ words: (await previous.all()).map((r) => r.word) }));
const registration = defineRegistration({ jobs: [echoJob] });

/** A stand-in for `app` of @azure/functions that records what is registered. */
function recordingApp() {
  const calls: Array<{ kind: string; name: string; options: Record<string, unknown> }> = [];
  const hooks: Array<() => unknown> = [];
  const record = (kind: string) => (name: string, options: Record<string, unknown>) => void calls.push({ kind, name, options });
  const app = {
    http: record('http'),
    serviceBusQueue: record('serviceBusQueue'),
    timer: record('timer'),
    hook: { appTerminate: (hook: () => unknown) => hooks.push(hook) },
  };
  return { app: app as unknown as FunctionsHostApp, calls, hooks };
}

let scratch: ScratchDatabase;
beforeAll(async () => {
  scratch = await createScratchDatabase(process.env.COREMACHINE_TEST_ADMIN_URL ?? '');
  const pool = createPool(scratch.url, 2);
  await migrate(pool);
  await pool.end();
});
afterAll(async () => {
  setTransportFactory(undefined);
  await closeAppContext();
  await scratch.drop();
});

describe('registerCoreMachine', () => {
  test('a wrong option is refused at registration by its name, an unknown one too, and nothing is registered', () => {
    const { app, calls } = recordingApp();
    expect(() => registerCoreMachine(app, registration, { poolMax: 500 })).toThrow(/^invalid configuration: option poolMax \(PG_POOL_MAX\): Too big/);
    expect(() => registerCoreMachine(app, registration, { databaseAuth: 'token' as 'entra' })).toThrow(/option databaseAuth \(DATABASE_AUTH\)/);
    expect(() => registerCoreMachine(app, registration, { preparedStatements: 'no' as unknown as boolean })).toThrow(/option preparedStatements/);
    expect(() => registerCoreMachine(app, registration, { poolSize: 3 } as never)).toThrow(/unknown option poolSize/);
    expect(() => registerCoreMachine(app, registration, { janitorSchedule: ' ' })).toThrow(/janitorSchedule/);
    // The registration is checked there too: the same job type twice, with different definitions.
    const twice = { jobs: [echoJob, { ...echoJob }], schedules: [] };
    expect(() => registerCoreMachine(app, twice)).toThrow(DuplicateRegistrationError);
    expect(calls).toEqual([]);
  });

  test('it registers every function the Functions app has, the janitor on the schedule given, and the terminate hook; once per app', () => {
    const { app, calls, hooks } = recordingApp();
    const env = { DATABASE_URL: scratch.url, PG_POOL_MAX: '50', LOG_LEVEL: 'silent', JANITOR_BATCH_SIZE: 'many' };
    registerCoreMachine(app, registration, { poolMax: 3, janitorSchedule: '*/5 * * * * *', env });
    const sorted = (list: Array<{ kind: string; name: string }>) => list.map(({ kind, name }) => `${kind}:${name}`).sort();
    expect(sorted(calls)).toEqual(sorted(registeredFunctions()));
    expect(calls.find((call) => call.kind === 'timer')?.options.schedule).toBe('*/5 * * * * *');
    expect(hooks).toHaveLength(1);
    expect(() => registerCoreMachine(app, registration)).toThrow(/already called for this app/);

    // App settings are judged when the engine starts, by their variable; options win over them.
    expect(() => loadAppConfig()).toThrow(/invalid configuration: JANITOR_BATCH_SIZE: /);
    registerCoreMachine(recordingApp().app, registration, { poolMax: 3, env: { ...env, JANITOR_BATCH_SIZE: '20' } });
    expect(loadAppConfig()).toMatchObject({ poolMax: 3, databaseUrl: scratch.url, janitor: { batchSize: 20 } });
  });

  test("the app's context runs the registration it was given, not this repository's", async () => {
    registerCoreMachine(recordingApp().app, registration, { env: { DATABASE_URL: scratch.url, LOG_LEVEL: 'silent' } });
    const transport = new InProcessTransport();
    setTransportFactory(() => transport);
    await closeAppContext();
    const context = await getAppContext();
    expect(context.config.databaseUrl).toBe(scratch.url);
    const { job } = await context.machine.submitJob('entry.echo_job', { words: ['a'] });
    expect(job.jobType).toBe('entry.echo_job');
    await expect(context.machine.submitJob('hello_world', { n: 1 })).rejects.toThrow(UnknownJobTypeError);
    await context.machine.cancelJob(job.jobId);
    await closeAppContext();
  });
});

describe('createCoreMachine', () => {
  test('runs a job to its end in this process, reports its events, and closes', async () => {
    const host = await createCoreMachine({ registration: shipped, databaseUrl: scratch.url, logLevel: 'silent', taskConcurrency: 4, migrate: false });
    try {
      expect(host).toMatchObject({ embedded: false, databaseUrl: scratch.url, jobTypes: ['approved_publish', 'hello_world', 'word_frequencies'] });
      const events: JobEvent[] = [];
      const unsubscribe = host.onJobEvent((event) => void events.push(event));
      const { job, created } = await host.submitJob('hello_world', { n: 4 });
      expect(created).toBe(true);
      const done = await host.waitForJob(job.jobId);
      expect(done).toMatchObject({ status: 'COMPLETED', result: { greetings: 4, replies: 4 } });
      expect((await host.listTasks(job.jobId, { stage: 2 })).map((task) => task.status)).toEqual(Array(4).fill('COMPLETED'));
      expect((await host.listEvents(job.jobId)).length).toBeGreaterThan(0);
      await host.idle();
      expect(events.map((event) => event.type)).toContain('JobCompleted');
      unsubscribe();
      await expect(host.waitForJob(job.jobId, { until: () => false, timeoutMs: 50 })).rejects.toThrow(
        /is still COMPLETED at stage 2 "reply" \(4\/4 tasks done\) after 50 ms/,
      );
      expect((await host.listSchedules()).map((schedule) => schedule.name)).toEqual(['hello_world_hourly']);
      await host.deleteJob(job.jobId);
      expect((await host.listJobs()).jobs.filter((listed) => listed.jobId === job.jobId)).toEqual([]);
    } finally {
      await host.close();
    }
  });

  test('a wrong option is refused by its name before anything starts', async () => {
    await expect(createCoreMachine({ registration: shipped, databaseUrl: scratch.url, jobConcurrency: 1000 })).rejects.toThrow(
      /option jobConcurrency \(JOB_CONCURRENCY\): Too big/,
    );
  });
});

test('defineRegistration checks the registration where it is declared', () => {
  expect(defineRegistration({ jobs: [echoJob] })).toEqual({ jobs: [echoJob], schedules: [] });
  const unknownType = defineSchedule({ name: 'entry_nightly', cron: '0 3 * * *', timezone: 'UTC', jobType: 'entry.nope', parameters: {} });
  expect(() => defineRegistration({ jobs: [echoJob], schedules: [unknownType] })).toThrow(UnknownJobTypeError);
});

/** `@default X` before `name?:` in a file's option interfaces. */
function documentedDefaults(file: string): Array<{ option: string; value: string }> {
  const text = readFileSync(path.join(root, file), 'utf8');
  return [...text.matchAll(/@default ([^\n]+)\n\s*\*\/\n\s*(\w+)\?:/g)].map((m) => ({ value: (m[1] ?? '').trim(), option: m[2] ?? '' }));
}

test('every option documents its default, and each literal @default is the one the settings schema applies', () => {
  const settings = documentedDefaults('core/config-options.ts');
  expect(settings.map(({ option }) => option).sort()).toEqual(Object.keys(SETTING_VARIABLES).sort());
  const baseline = loadConfig({});
  let literal = 0;
  for (const { option, value } of settings) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value.replace(/^'(.*)'$/, '"$1"'));
    } catch {
      continue; // prose: "process.env.DATABASE_URL", "one tick interval of each schedule"
    }
    literal++;
    // Giving the documented default in code changes nothing: it is the default.
    expect({ option, config: loadConfig({}, { [option]: parsed }) }).toEqual({ option, config: baseline });
  }
  expect(literal).toBeGreaterThanOrEqual(17);
  // The entry points' own options document theirs too.
  expect(documentedDefaults('package/azure-functions.ts').map(({ option }) => option)).toEqual(['janitorSchedule', 'env']);
  expect(documentedDefaults('package/node-host.ts').map(({ option }) => option)).toEqual(
    expect.arrayContaining(['migrate', 'env', 'log', 'timeoutMs', 'until']),
  );
  expect(documentedDefaults('package/testing.ts').map(({ option }) => option)).toEqual(['databaseUrl', 'env', 'log', 'now']);
});
