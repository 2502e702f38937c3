/**
 * The queue names and settings are written in four places that no compiler connects: the
 * transport's constants, the Bicep template, the emulator's Config.json and host.json. These
 * checks fail the build when one of them drifts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SERVICE_BUS_CONNECTION_SETTING, SERVICE_BUS_NAMESPACE_SETTING } from '../core/transport/service-bus-transport';
import { EVENTS_DEFAULT_SUBSCRIPTION, EVENTS_TOPIC, JOBS_QUEUE, SUBMISSIONS_QUEUE, TASKS_QUEUE } from '../core/transport/transport';
import { SERVICE_BUS_MAX_DELIVERY_COUNT } from '../core/message-settlement';
import { AZURE_RESERVED_CONNECTIONS as BUDGET_RESERVED, serverSku } from '../core/deployment-budget';

const root = path.resolve(__dirname, '..');
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8');
const readJson = (file: string): unknown => JSON.parse(read(file));

/** Bicep source without `//` comments, so commented-out code cannot satisfy a check. */
const bicep = (file: string): string => read(file).replace(/\/\/.*$/gm, '');

/** The body of `var <name> = [ ... ]` or `var <name> = { ... }` in a Bicep file (top-level, closed at column 0). */
function bicepVar(source: string, name: string): string {
  const match = new RegExp(`^var ${name} = ([[{])\\n([\\s\\S]*?)^[\\]}]`, 'm').exec(source);
  if (!match?.[2]) throw new Error(`var ${name} not found in infra/main.bicep`);
  return match[2];
}

/** `key: value` lines of a flat Bicep object literal; values are strings, booleans or integers. */
function bicepObject(body: string): Record<string, string | number | boolean> {
  const result: Record<string, string | number | boolean> = {};
  for (const [, key, raw] of body.matchAll(/^\s*(\w+):\s*(.+?)\s*$/gm)) {
    if (!key || raw === undefined) continue;
    if (/^'.*'$/.test(raw)) result[key] = raw.slice(1, -1);
    else if (raw === 'true' || raw === 'false') result[key] = raw === 'true';
    else if (/^-?\d+$/.test(raw)) result[key] = Number(raw);
    else throw new Error(`unsupported Bicep value for ${key}: ${raw}`);
  }
  return result;
}

/** ISO 8601 duration (PT5M, P14D, PT1H30M) in milliseconds, as Service Bus and the emulator write them. */
function isoDurationMs(value: unknown): number {
  const match = typeof value === 'string' ? /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(value) : null;
  if (!match || value === 'P' || value === 'PT') throw new Error(`not an ISO 8601 duration: ${String(value)}`);
  const [, days = '0', hours = '0', minutes = '0', seconds = '0'] = match;
  return ((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60_000 + Number(seconds) * 1000;
}

/** .NET TimeSpan text ([d.]hh:mm:ss[.fff]) in milliseconds, as host.json writes durations. */
function timeSpanMs(value: unknown): number {
  const match = typeof value === 'string' ? /^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(value) : null;
  if (!match) throw new Error(`not a TimeSpan: ${String(value)}`);
  const [, days = '0', hours = '0', minutes = '0', seconds = '0'] = match;
  return ((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60_000 + Number(seconds) * 1000;
}

interface EmulatorQueue {
  Name: string;
  Properties: Record<string, unknown>;
}

function emulatorQueues(): EmulatorQueue[] {
  const config = readJson('infra/servicebus-emulator/Config.json') as { UserConfig?: { Namespaces?: { Name?: string; Queues?: EmulatorQueue[] }[] } };
  const namespaces = config.UserConfig?.Namespaces ?? [];
  // The emulator accepts exactly one namespace, and only under this name.
  expect(namespaces.map((namespace) => namespace.Name)).toEqual(['sbemulatorns']);
  return namespaces[0]?.Queues ?? [];
}

const main = bicep('infra/main.bicep');
const queueNames = [...bicepVar(main, 'serviceBusQueueNames').matchAll(/'([^']+)'/g)].map((match) => match[1]);
const queueProperties = bicepObject(bicepVar(main, 'serviceBusQueueProperties'));

/** The emulator caps the duplicate-detection window at 5 minutes (its Config schema); Azure allows up to 7 days. */
const EMULATOR_MAX_DUPLICATE_WINDOW_MS = 5 * 60_000;

test('the Bicep queues are exactly the transport queues, and the module creates them with the shared properties', () => {
  expect([...queueNames].sort()).toEqual([JOBS_QUEUE, TASKS_QUEUE, SUBMISSIONS_QUEUE].sort());
  // The vars only matter if they reach the resources.
  expect(main).toMatch(/queueNames:\s*serviceBusQueueNames\b/);
  expect(main).toMatch(/queueProperties:\s*serviceBusQueueProperties\b/);
  const module = bicep('infra/modules/servicebus.bicep');
  expect(module).toMatch(/for queueName in queueNames:\s*\{[\s\S]*?name: queueName[\s\S]*?properties: queueProperties/);
});

test('the Bicep queue properties are the ones the engine relies on', () => {
  expect(queueProperties).toMatchObject({
    lockDuration: 'PT5M',
    maxDeliveryCount: 10,
    requiresDuplicateDetection: true,
    duplicateDetectionHistoryTimeWindow: 'PT10M',
    deadLetteringOnMessageExpiration: true,
  });
});

test("the settlement policy knows the queues' max delivery count", () => {
  expect(SERVICE_BUS_MAX_DELIVERY_COUNT).toBe(queueProperties.maxDeliveryCount);
});

test('the emulator config defines the same queues as the Bicep template', () => {
  expect(
    emulatorQueues()
      .map((queue) => queue.Name)
      .sort(),
  ).toEqual([JOBS_QUEUE, TASKS_QUEUE, SUBMISSIONS_QUEUE].sort());
});

test.each([JOBS_QUEUE, TASKS_QUEUE, SUBMISSIONS_QUEUE])(
  'emulator queue %s agrees with Bicep on lock, deliveries, duplicate detection and dead-lettering',
  (name) => {
    const queue = emulatorQueues().find((candidate) => candidate.Name === name);
    if (!queue) throw new Error(`queue ${name} missing from Config.json`);
    const props = queue.Properties;
    expect(isoDurationMs(props.LockDuration)).toBe(isoDurationMs(queueProperties.lockDuration));
    expect(props.MaxDeliveryCount).toBe(queueProperties.maxDeliveryCount);
    expect(props.RequiresDuplicateDetection).toBe(queueProperties.requiresDuplicateDetection);
    expect(props.DeadLetteringOnMessageExpiration).toBe(queueProperties.deadLetteringOnMessageExpiration);
    // Same window where the emulator allows it, its maximum where it does not.
    const azureWindow = isoDurationMs(queueProperties.duplicateDetectionHistoryTimeWindow);
    expect(isoDurationMs(props.DuplicateDetectionHistoryTimeWindow)).toBe(Math.min(azureWindow, EMULATOR_MAX_DUPLICATE_WINDOW_MS));
  },
);

test('host.json renews message locks for at least one lock duration', () => {
  const host = readJson('host.json') as { extensions?: { serviceBus?: { maxAutoLockRenewalDuration?: string } } };
  const renewal = timeSpanMs(host.extensions?.serviceBus?.maxAutoLockRenewalDuration);
  expect(renewal).toBeGreaterThanOrEqual(isoDurationMs(queueProperties.lockDuration));
});

test('the Service Bus connection setting names agree across the transport, Bicep and the local settings example', () => {
  const functionApp = bicep('infra/modules/functionapp.bicep');
  expect(functionApp).toContain(`name: '${SERVICE_BUS_NAMESPACE_SETTING}'`);
  const local = readJson('infra/local.settings.example.json') as { Values?: Record<string, string> };
  expect(local.Values?.[SERVICE_BUS_CONNECTION_SETTING]).toContain('UseDevelopmentEmulator=true');
});

test('the duration parsers read the formats used above', () => {
  expect(isoDurationMs('PT5M')).toBe(300_000);
  expect(isoDurationMs('P14D')).toBe(14 * 86_400_000);
  expect(isoDurationMs('PT1H30M10S')).toBe(5_410_000);
  expect(() => isoDurationMs('5 minutes')).toThrow();
  expect(timeSpanMs('00:10:00')).toBe(600_000);
  expect(timeSpanMs('1.02:00:00')).toBe(26 * 3_600_000);
  expect(() => timeSpanMs('PT10M')).toThrow();
});

/** `Name: { key: value … }` entries of a two-level Bicep object var (`var databaseProfiles = {…}`). */
function bicepObjects(body: string): Record<string, Record<string, string | number | boolean>> {
  const result: Record<string, Record<string, string | number | boolean>> = {};
  for (const [, name, inner] of body.matchAll(/^\s*(\w+):\s*\{\n([\s\S]*?)^\s*\}/gm)) {
    if (name && inner !== undefined) result[name] = bicepObject(inner);
  }
  return result;
}

/**
 * Azure's max_connections per SKU and the 15 it reserves (learn.microsoft.com/azure/postgresql/flexible-server/concepts-limits),
 * written here a second time on purpose: core/deployment-budget.ts's table must agree with it.
 */
const AZURE_MAX_CONNECTIONS: Record<string, number> = {
  Standard_B1ms: 50,
  Standard_B2s: 429,
  Standard_B2ms: 859,
  Standard_D2ds_v5: 859,
  Standard_D4ds_v5: 1718,
};
const AZURE_RESERVED_CONNECTIONS = 15;

describe("connection budget: each profile's figures, and the values reaching the resources (the per-group sum: tests/budget.test.ts)", () => {
  const profiles = bicepObjects(bicepVar(main, 'databaseProfiles'));
  const functionApp = bicep('infra/modules/functionapp.bicep');
  const postgres = bicep('infra/modules/postgres.bicep');
  const num = (profile: Record<string, unknown>, key: string): number => {
    const value = profile[key];
    if (typeof value !== 'number') throw new Error(`profile field ${key} is not a number: ${String(value)}`);
    return value;
  };

  test('two profiles, chosen by one parameter, Burstable by default', () => {
    expect(Object.keys(profiles).sort()).toEqual(['Burstable', 'GeneralPurpose']);
    expect(main).toMatch(/@allowed\(\['Burstable', 'GeneralPurpose'\]\)\s*(@description\('[^\n]*'\)\s*)?param databaseProfile string = 'Burstable'/);
    expect(main).toMatch(/var profile = databaseProfiles\[databaseProfile\]/);
    const parameters = readJson('infra/main.parameters.json') as { parameters: Record<string, { value: string }> };
    expect(parameters.parameters.databaseProfile?.value).toMatch(/^\$\{COREMACHINE_DATABASE_PROFILE=(Burstable|GeneralPurpose)\}$/);
  });

  test('the table of server limits in core/deployment-budget.ts agrees with the one written here', () => {
    for (const [sku, max] of Object.entries(AZURE_MAX_CONNECTIONS)) expect({ sku, max: serverSku(sku)?.maxConnections }).toEqual({ sku, max });
    expect(BUDGET_RESERVED).toBe(AZURE_RESERVED_CONNECTIONS);
  });

  test.each(['Burstable', 'GeneralPurpose'])("profile %s: its server's figures, its port and its pooler", (name) => {
    const profile = profiles[name] ?? {};
    const sku = String(profile.skuName);
    expect(num(profile, 'maxConnections')).toBe(AZURE_MAX_CONNECTIONS[sku]);
    expect(num(profile, 'reserved')).toBe(AZURE_RESERVED_CONNECTIONS);
    // Flex Consumption takes 40 instances at the least: a profile that needs fewer is not deployable.
    expect(num(profile, 'instanceCap')).toBeGreaterThanOrEqual(40);
    if (profile.pgbouncer === true) {
      // The app talks to PgBouncer (port 6432, transaction mode); PgBouncer's server connections fit the server.
      expect(profile.port).toBe(6432);
      expect(num(profile, 'pgbouncerPoolSize') * num(profile, 'pgbouncerPools') + num(profile, 'headroom')).toBeLessThanOrEqual(
        num(profile, 'maxConnections') - num(profile, 'reserved'),
      );
      expect(profile.skuTier).not.toBe('Burstable'); // Azure offers the built-in PgBouncer on General Purpose and up only
    } else {
      // Without a pooler the app's connections count against max_connections itself.
      expect(profile.port).toBe(5432);
      expect(num(profile, 'connectionLimit')).toBe(num(profile, 'maxConnections'));
    }
  });

  test('the profile reaches the resources: instance cap, pool size, always-ready instances, port, SKU and PgBouncer settings', () => {
    // The deployment cannot exceed the cap, whatever maximumInstanceCount says.
    expect(main).toMatch(/var effectiveMaximumInstanceCount = min\(maximumInstanceCount, profile\.instanceCap\)/);
    expect(main).toMatch(/maximumInstanceCount: effectiveMaximumInstanceCount\b/);
    // PG_POOL_MAX is the profile's unless the deployer sets it (then `coremachine doctor` checks it).
    expect(main).toMatch(/var effectivePoolMax = poolMax > 0 \? poolMax : profile\.poolMax/);
    expect(main).toMatch(/^\s*poolMax: effectivePoolMax$/m);
    expect(main).toMatch(/var alwaysReady = filter\(alwaysReadyCandidates, entry => entry\.instanceCount > 0\)/);
    expect(main).toMatch(/^\s*alwaysReady: alwaysReady$/m);
    expect(main).toMatch(/postgresPort: profile\.port\b/);
    expect(main).toMatch(/skuName: profile\.skuName\b/);
    expect(main).toMatch(/pgbouncer: profile\.pgbouncer\b/);
    expect(main).toMatch(/pgbouncerPoolSize: profile\.pgbouncerPoolSize\b/);
    expect(main).toMatch(/pgbouncerMaxClientConnections: profile\.connectionLimit\b/);
    expect(functionApp).toMatch(/\{ name: 'PG_POOL_MAX', value: string\(poolMax\) \}/);
    // Read raw: the comment stripper would cut the URL at its '//'.
    expect(read('infra/modules/functionapp.bicep')).toMatch(/@\$\{postgresHost\}:\$\{postgresPort\}\//);
    expect(functionApp).toMatch(
      /scaleAndConcurrency: \{\s*alwaysReady: alwaysReady\s*maximumInstanceCount: maximumInstanceCount\s*instanceMemoryMB: instanceMemoryMB\s*\}/,
    );
    for (const setting of [
      "'pgbouncer.enabled', value: 'true'",
      "'pgbouncer.pool_mode', value: 'transaction'",
      "'pgbouncer.max_prepared_statements'",
      "'pgbouncer.default_pool_size', value: string(pgbouncerPoolSize)",
      "'pgbouncer.max_client_conn', value: string(pgbouncerMaxClientConnections)",
    ]) {
      expect(postgres).toContain(`name: ${setting}`);
    }
    expect(postgres).toMatch(/for setting in \(pgbouncer \? pgbouncerSettings : \[\]\)/);
  });

  test("azd fills the budget's parameters from the settings the preflight reads", () => {
    const parameters = readJson('infra/main.parameters.json') as { parameters: Record<string, { value: string }> };
    expect(parameters.parameters.maximumInstanceCount?.value).toBe('${COREMACHINE_MAXIMUM_INSTANCE_COUNT=100}');
    expect(parameters.parameters.poolMax?.value).toBe('${PG_POOL_MAX=0}');
    expect(parameters.parameters.alwaysReadyJobs?.value).toBe('${COREMACHINE_ALWAYS_READY_JOBS=0}');
    expect(parameters.parameters.alwaysReadyTasks?.value).toBe('${COREMACHINE_ALWAYS_READY_TASKS=0}');
  });

  test('host.json: an invocation waiting for a pooled connection times out (and is rescheduled) long before the host would kill it', () => {
    const host = readJson('host.json') as { functionTimeout?: string };
    const connectTimeout = /\{ name: 'PG_CONNECT_TIMEOUT_MS', value: '(\d+)' \}/.exec(functionApp)?.[1];
    expect(Number(connectTimeout)).toBeGreaterThan(0);
    expect(Number(connectTimeout) * 10).toBeLessThan(timeSpanMs(host.functionTimeout));
  });
});

test("the job events topic and its default subscription exist in the Bicep and the emulator under the transport's names", () => {
  const serviceBusModule = bicep('infra/modules/servicebus.bicep');
  expect(main).toMatch(new RegExp(`^var serviceBusEventsTopicName = '${EVENTS_TOPIC}'$`, 'm'));
  expect(main).toMatch(new RegExp(`^var serviceBusEventsSubscriptionName = '${EVENTS_DEFAULT_SUBSCRIPTION}'$`, 'm'));
  expect(main).toMatch(/eventsTopicName:\s*serviceBusEventsTopicName\b/);
  expect(serviceBusModule).toMatch(/namespaces\/topics@[\s\S]*?name: eventsTopicName[\s\S]*?requiresDuplicateDetection: true/);
  expect(serviceBusModule).toMatch(/topics\/subscriptions@[\s\S]*?parent: eventsTopic[\s\S]*?name: eventsSubscriptionName/);
  const config = readJson('infra/servicebus-emulator/Config.json') as {
    UserConfig: {
      Namespaces: Array<{ Topics: Array<{ Name: string; Properties: { RequiresDuplicateDetection: boolean }; Subscriptions: Array<{ Name: string }> }> }>;
    };
  };
  const topics = config.UserConfig.Namespaces[0]?.Topics ?? [];
  expect(topics.map((topic) => topic.Name)).toEqual([EVENTS_TOPIC]);
  expect(topics[0]?.Properties.RequiresDuplicateDetection).toBe(true);
  expect(topics[0]?.Subscriptions.map((subscription) => subscription.Name)).toEqual([EVENTS_DEFAULT_SUBSCRIPTION]);
});
