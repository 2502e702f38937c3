/**
 * The connection budget (core/deployment-budget.ts) for every database profile of infra/main.bicep,
 * against the scale groups the Functions app really registers: functions/index.ts is loaded with
 * `app` mocked, every app.http call is the one `http` group, every other registration a group of
 * its own. A profile that could open more connections than its server (or its PgBouncer) takes
 * fails here, at the Bicep's defaults and at the highest always-ready counts the Bicep accepts.
 */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { app } from '@azure/functions';
import {
  AZURE_RESERVED_CONNECTIONS,
  connectionBudget,
  FLEX_CONSUMPTION,
  hasBuiltInPgBouncer,
  largestThatFits,
  scaleGroups,
  serverSku,
  type BudgetPlan,
  type FunctionRegistration,
} from '../core/deployment-budget';
import { registeredFunctions } from '../bin/cli/function-groups';
import { readInfra, type BicepValue } from '../bin/cli/infra-parameters';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));
// eslint-disable-next-line @typescript-eslint/no-require-imports -- registration happens on import, after the mock
require('../functions/index');

/** What functions/index.ts registered, read before anything else touches the mocks. */
const registrations: FunctionRegistration[] = [
  ...jest.mocked(app.http).mock.calls.map(([name]) => ({ kind: 'http', name })),
  ...jest.mocked(app.serviceBusQueue).mock.calls.map(([name]) => ({ kind: 'serviceBusQueue', name })),
  ...jest.mocked(app.timer).mock.calls.map(([name]) => ({ kind: 'timer', name })),
];
const groups = scaleGroups(registrations);
const root = path.resolve(__dirname, '..');
const infra = readInfra(path.join(root, 'infra'));

function num(profile: Record<string, BicepValue>, key: string): number {
  const value = profile[key];
  if (typeof value !== 'number') throw new Error(`profile field ${key} is not a number: ${String(value)}`);
  return value;
}

/** The plan azd would deploy for a profile, with the always-ready counts given. */
function planOf(name: string, alwaysReadyCount: (param: string) => number): BudgetPlan {
  const profile = infra.profiles[name] ?? {};
  const server = serverSku(String(profile.skuName));
  if (!server) throw new Error(`${String(profile.skuName)} is not in SERVER_SKUS`);
  const defaultMaximum = Number(infra.params.maximumInstanceCount?.defaultValue);
  return {
    server,
    reserved: num(profile, 'reserved'),
    headroom: num(profile, 'headroom'),
    poolMax: num(profile, 'poolMax'),
    maximumInstanceCount: Math.min(defaultMaximum, num(profile, 'instanceCap')),
    alwaysReady: Object.fromEntries(infra.alwaysReady.map(({ group, param }) => [group, alwaysReadyCount(param)])),
    ...(profile.pgbouncer === true
      ? {
          pgbouncer: {
            maxClientConn: num(profile, 'connectionLimit'),
            defaultPoolSize: num(profile, 'pgbouncerPoolSize'),
            pools: num(profile, 'pgbouncerPools'),
          },
        }
      : {}),
  };
}

test('the app registers one http group and a group per trigger: 8 today', () => {
  expect(registrations.filter((r) => r.kind === 'http').length).toBeGreaterThan(10);
  expect(groups[0]?.name).toBe('http');
  expect(groups.slice(1).map((group) => group.name)).toEqual(registrations.filter((r) => r.kind !== 'http').map((r) => `function:${r.name}`));
  expect(groups).toHaveLength(8);
});

test('the preflight enumerates exactly what functions/index.ts registers', () => {
  const sorted = (list: FunctionRegistration[]) => list.map((r) => `${r.kind}:${r.name}`).sort();
  expect(sorted(registeredFunctions())).toEqual(sorted(registrations));
  // The recorder puts the mocks back.
  expect(jest.isMockFunction(app.serviceBusQueue)).toBe(true);
});

describe.each(Object.keys(infra.profiles))('profile %s', (name) => {
  const profile = infra.profiles[name] ?? {};
  const server = serverSku(String(profile.skuName));

  test('matches the table of server limits and is valid on Flex Consumption', () => {
    expect(server).toBeDefined();
    expect(num(profile, 'maxConnections')).toBe(server?.maxConnections);
    expect(profile.skuTier).toBe(server?.tier);
    expect(num(profile, 'reserved')).toBe(AZURE_RESERVED_CONNECTIONS);
    expect(num(profile, 'headroom')).toBeGreaterThanOrEqual(10);
    expect(num(profile, 'poolMax')).toBeGreaterThanOrEqual(1);
    expect(num(profile, 'instanceCap')).toBeGreaterThanOrEqual(FLEX_CONSUMPTION.lowestMaximumInstanceCount);
    expect(num(profile, 'instanceCap')).toBeLessThanOrEqual(FLEX_CONSUMPTION.highestMaximumInstanceCount);
    if (profile.pgbouncer === true) {
      expect(hasBuiltInPgBouncer(server?.tier ?? 'Burstable')).toBe(true);
      expect(profile.port).toBe(6432);
      expect(num(profile, 'pgbouncerPools')).toBeGreaterThanOrEqual(1);
    } else {
      expect(profile.port).toBe(5432);
      expect(num(profile, 'connectionLimit')).toBe(num(profile, 'maxConnections'));
    }
  });

  test.each([
    ['no always-ready instances (the default)', () => 0],
    ['the highest always-ready counts main.bicep accepts', (param: string) => Number(infra.params[param]?.maxValue)],
  ])('fits its server with %s', (_label, alwaysReadyCount: (param: string) => number) => {
    const plan = planOf(name, alwaysReadyCount);
    const budget = connectionBudget(groups, plan);
    expect(budget.problems).toEqual([]);
    for (const limit of budget.limits) expect({ ...limit, fits: limit.demand <= limit.limit }).toMatchObject({ fits: true });
    expect(budget.fits).toBe(true);
  });
});

test('maximumInstanceCount is at least 40 in every parameter that carries it', () => {
  const param = infra.params.maximumInstanceCount;
  expect(param?.minValue).toBe(FLEX_CONSUMPTION.lowestMaximumInstanceCount);
  expect(param?.maxValue).toBe(FLEX_CONSUMPTION.highestMaximumInstanceCount);
  expect(Number(param?.defaultValue)).toBeGreaterThanOrEqual(40);
  expect(readFileSync(path.join(root, 'infra/modules/functionapp.bicep'), 'utf8')).toMatch(
    /@minValue\(40\)\n@maxValue\(1000\)\n(@description\('[^\n]*'\)\n)?param maximumInstanceCount int = (\d+)/,
  );
  for (const { param } of infra.alwaysReady) expect(infra.params[param]).toMatchObject({ type: 'int', defaultValue: 0, minValue: 0 });
});

describe('the formula', () => {
  const sample = scaleGroups([
    { kind: 'http', name: 'a' },
    { kind: 'get', name: 'b' },
    { kind: 'serviceBusQueue', name: 'q' },
    { kind: 'timer', name: 't' },
  ]);
  const b2s = serverSku('Standard_B2s');
  if (!b2s) throw new Error('Standard_B2s missing');
  const direct: BudgetPlan = { server: b2s, reserved: 15, headroom: 10, poolMax: 2, maximumInstanceCount: 40, alwaysReady: {} };

  test('HTTP functions share one group, every other function has its own; duplicates are refused', () => {
    expect(sample).toEqual([
      { name: 'http', functions: ['a', 'b'] },
      { name: 'function:q', functions: ['q'] },
      { name: 'function:t', functions: ['t'] },
    ]);
    expect(() =>
      scaleGroups([
        { kind: 'timer', name: 'x' },
        { kind: 'http', name: 'x' },
      ]),
    ).toThrow(/registered twice/);
  });

  test('direct: groups × (instances + always ready) × pool against max_connections − reserved − headroom', () => {
    const budget = connectionBudget(sample, { ...direct, alwaysReady: { 'function:q': 5 } });
    expect(budget.groups.map((g) => g.connections)).toEqual([80, 90, 80]);
    expect(budget.limits).toEqual([expect.objectContaining({ subject: 'app connections', demand: 250, limit: 404 })]);
    expect(budget.fits).toBe(true);
    expect(connectionBudget(sample, { ...direct, poolMax: 4 }).fits).toBe(false); // 480 > 404
    expect(largestThatFits(sample, { ...direct, poolMax: 4 })).toEqual({ poolMax: 3, maximumInstanceCount: 33 });
  });

  test('through PgBouncer: clients against max_client_conn, its server pools against the server', () => {
    const d2 = serverSku('Standard_D2ds_v5');
    if (!d2) throw new Error('Standard_D2ds_v5 missing');
    const plan: BudgetPlan = { ...direct, server: d2, poolMax: 10, pgbouncer: { maxClientConn: 1000, defaultPoolSize: 500, pools: 2 } };
    const budget = connectionBudget(sample, plan);
    expect(budget.limits.map((l) => [l.subject, l.demand, l.limit])).toEqual([
      ['app connections', 1200, 1000],
      ['PgBouncer server connections', 1000, 834],
    ]);
    expect(budget.fits).toBe(false);
  });

  test('what Azure would refuse is a problem, whatever the arithmetic', () => {
    const problems = connectionBudget(sample, {
      ...direct,
      maximumInstanceCount: 20,
      alwaysReady: { 'function:gone': 1 },
      pgbouncer: { maxClientConn: 60_000, defaultPoolSize: 10, pools: 1 },
    }).problems;
    expect(problems).toEqual([
      expect.stringMatching(/maximumInstanceCount 20 is outside 40–1000/),
      expect.stringMatching(/Standard_B2s is Burstable: the built-in PgBouncer/),
      expect.stringMatching(/max_client_conn 60000 is outside 1–50000/),
      expect.stringMatching(/"function:gone", which is not a scale group/),
    ]);
  });
});
