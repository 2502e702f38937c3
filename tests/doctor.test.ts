/**
 * `coremachine doctor`, run in-process like the other local commands: the preflight azd runs
 * before provisioning. It prints the budget per scale group and exits 0 when the deployment fits,
 * 1 (naming the setting and the limit) when it does not or a setting is out of bounds, 2 on a
 * wrong invocation. It needs no database: no DATABASE_URL is given to any run below.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCliCaptured, type CliRun } from './support/cli-run';

const root = path.resolve(__dirname, '..');
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-doctor-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function doctor(args: string[] = [], env: Record<string, string> = {}): Promise<CliRun> {
  return runCliCaptured(['doctor', ...args], { isTTY: false, env });
}

/** A copy of infra/ whose main.bicep has `edit` applied, for profiles the real one must never have. */
function infraWith(name: string, edit: (bicep: string) => string): string {
  const dir = path.join(tmp, name);
  cpSync(path.join(root, 'infra'), dir, { recursive: true, filter: (source) => !source.includes('migrations') });
  const file = path.join(dir, 'main.bicep');
  const before = readFileSync(file, 'utf8');
  const after = edit(before);
  expect(after).not.toBe(before);
  writeFileSync(file, after);
  return dir;
}

test('the default profile fits: the table per scale group, the limit, exit 0', async () => {
  const run = await doctor();
  expect(run).toMatchObject({ code: 0, stderr: '' });
  expect(run.stdout).toMatch(/^profile Burstable: Standard_B2s \(Burstable, 2 vCores, max_connections 429\), the app connects directly \(port 5432\)$/m);
  expect(run.stdout).toMatch(
    /^maximumInstanceCount 40 on-demand instances per scale group \(COREMACHINE_MAXIMUM_INSTANCE_COUNT 100, main\.parameters\.json's default, capped at the profile's instanceCap 40\)$/m,
  );
  expect(run.stdout).toMatch(/^PG_POOL_MAX 1 per instance \(the profile's poolMax; PG_POOL_MAX is not set\)$/m);
  expect(run.stdout).toMatch(/^SCALE GROUP +FUNCTIONS +MAX INSTANCES +ALWAYS READY +PG_POOL_MAX +CONNECTIONS$/m);
  expect(run.stdout).toMatch(/^http +\d+ functions +40 +0 +1 +40$/m);
  for (const trigger of ['jobs-queue', 'tasks-queue', 'submissions-queue', 'jobs-dead-letters', 'tasks-dead-letters', 'submissions-dead-letters', 'janitor']) {
    expect(run.stdout).toMatch(new RegExp(`^function:${trigger} +${trigger} +40 +0 +1 +40$`, 'm'));
  }
  expect(run.stdout).toMatch(/^total +8 scale groups +320 +0 +320$/m);
  expect(run.stdout).toMatch(/^app connections: 320 ≤ 404 = max_connections 429 \(Standard_B2s\) − 15 reserved by Azure − 10 headroom$/m);
  expect(run.stdout).toMatch(/^fits: 8 scale groups, 320 instances at most, 320 of 404 connections \(84 to spare\)$/m);
});

test('the production profile fits through PgBouncer, chosen by flag or by the environment as azd would', async () => {
  for (const run of [await doctor(['--profile', 'GeneralPurpose']), await doctor([], { COREMACHINE_DATABASE_PROFILE: 'GeneralPurpose' })]) {
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^profile GeneralPurpose: Standard_D2ds_v5 .* through the built-in PgBouncer \(port 6432, transaction mode\)$/m);
    expect(run.stdout).toMatch(/^app connections: 3200 ≤ 5000 = pgbouncer\.max_client_conn/m);
    expect(run.stdout).toMatch(/^PgBouncer server connections: 200 ≤ 834 = pgbouncer\.default_pool_size 100 × 2 user\/database pairs/m);
  }
});

test('always-ready instances are counted on top of the on-demand maximum', async () => {
  const run = await doctor([], { COREMACHINE_ALWAYS_READY_TASKS: '3', COREMACHINE_ALWAYS_READY_JOBS: '2' });
  expect(run.code).toBe(0);
  expect(run.stdout).toMatch(/^always ready: function:jobs-queue 2, function:tasks-queue 3$/m);
  expect(run.stdout).toMatch(/^function:tasks-queue +tasks-queue +40 +3 +1 +43$/m);
  expect(run.stdout).toMatch(/^app connections: 325 ≤ 404/m);
});

test('a PG_POOL_MAX the server cannot take is refused with exit 1, naming PG_POOL_MAX, maximumInstanceCount and the limit', async () => {
  const run = await doctor([], { PG_POOL_MAX: '2' });
  expect(run.code).toBe(1);
  expect(run.stdout).toMatch(/^PG_POOL_MAX 2 per instance \(PG_POOL_MAX \(environment\), instead of the profile's 1\)$/m);
  expect(run.stderr).toMatch(
    /^coremachine doctor: does not fit\. app connections 640 > 404 \(max_connections 429 \(Standard_B2s\) − 15 reserved by Azure − 10 headroom\)\.$/m,
  );
  expect(run.stderr).toMatch(
    /8 scale groups × maximumInstanceCount 40 \(\+ 0 always ready\) × PG_POOL_MAX 2: lower PG_POOL_MAX to 1; maximumInstanceCount cannot go below 40/,
  );
});

test('settings outside the bounds the Bicep declares are refused with exit 1, naming the setting and the bound', async () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PG_POOL_MAX: '500' }, /^coremachine doctor: PG_POOL_MAX \(parameter poolMax\) is 500, above 200, the highest main\.bicep accepts$/m],
    [{ PG_POOL_MAX: 'many' }, /^coremachine doctor: PG_POOL_MAX \(parameter poolMax\) must be a whole number, not "many" \(PG_POOL_MAX \(environment\)\)$/m],
    [
      { COREMACHINE_MAXIMUM_INSTANCE_COUNT: '20' },
      /^coremachine doctor: COREMACHINE_MAXIMUM_INSTANCE_COUNT \(parameter maximumInstanceCount\) is 20, below 40, the lowest main\.bicep accepts; 40 is the lowest Flex Consumption accepts/m,
    ],
    [{ COREMACHINE_ALWAYS_READY_TASKS: '50' }, /^coremachine doctor: COREMACHINE_ALWAYS_READY_TASKS \(parameter alwaysReadyTasks\) is 50, above 20/m],
    [
      { COREMACHINE_DATABASE_PROFILE: 'Premium' },
      /^coremachine doctor: COREMACHINE_DATABASE_PROFILE is "Premium" \(COREMACHINE_DATABASE_PROFILE \(environment\)\): main\.bicep offers Burstable, GeneralPurpose$/m,
    ],
  ];
  for (const [env, message] of cases) {
    const run = await doctor([], env);
    expect({ env, code: run.code }).toEqual({ env, code: 1 });
    expect(run.stderr).toMatch(message);
  }
});

test('a profile whose server cannot take its instances is refused with exit 1, naming maximumInstanceCount and the limit', async () => {
  const b1ms = infraWith('b1ms', (bicep) =>
    bicep.replace("skuName: 'Standard_B2s'", "skuName: 'Standard_B1ms'").replace(/maxConnections: 429\n/, 'maxConnections: 50\n'),
  );
  const run = await doctor(['--infra', b1ms]);
  expect(run.code).toBe(1);
  expect(run.stderr).toMatch(
    /^coremachine doctor: does not fit\. app connections 320 > 25 \(max_connections 50 \(Standard_B1ms\) − 15 reserved by Azure − 10 headroom\)\.$/m,
  );
  expect(run.stderr).toMatch(/no PG_POOL_MAX ≥ 1 fits these instances; maximumInstanceCount cannot go below 40 \(Flex Consumption's lowest\)/);

  const wrongLimit = infraWith('wrong-limit', (bicep) => bicep.replace(/maxConnections: 429\n/, 'maxConnections: 859\n'));
  const lying = await doctor(['--infra', wrongLimit]);
  expect(lying.code).toBe(1);
  expect(lying.stderr).toMatch(/databaseProfiles\.Burstable\.maxConnections says 859, but Standard_B2s allows 429/);

  const bouncerOnBurstable = infraWith('bouncer', (bicep) =>
    bicep.replace("skuName: 'Standard_D2ds_v5'\n    skuTier: 'GeneralPurpose'", "skuName: 'Standard_B2ms'\n    skuTier: 'Burstable'"),
  );
  const burstable = await doctor(['--infra', bouncerOnBurstable, '--profile', 'GeneralPurpose']);
  expect(burstable.code).toBe(1);
  expect(burstable.stderr).toMatch(/Standard_B2ms is Burstable: the built-in PgBouncer runs on General Purpose and Memory Optimized only/);
});

test('an unknown profile, a missing infra folder or a stray argument is a usage error: exit 2', async () => {
  const unknown = await doctor(['--profile', 'Premium']);
  expect(unknown).toMatchObject({ code: 2, stdout: '' });
  expect(unknown.stderr).toMatch(/^coremachine doctor: unknown profile "Premium": main\.bicep offers Burstable, GeneralPurpose\nusage: coremachine doctor /);
  for (const args of [['--infra', path.join(tmp, 'nothing-here')], ['extra'], ['--profil', 'Burstable']]) {
    const run = await doctor(args);
    expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 2, stdout: '' });
    expect(run.stderr).toMatch(/^coremachine doctor: .+\nusage: coremachine doctor /);
  }
  const help = await doctor(['--help']);
  expect(help).toMatchObject({ code: 0, stderr: '' });
  expect(help.stdout).toMatch(/^usage: coremachine doctor \[--profile NAME\] \[--infra DIR\]/);
});
