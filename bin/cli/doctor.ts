import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../core/config';
import {
  connectionBudget,
  FLEX_CONSUMPTION,
  largestThatFits,
  scaleGroups,
  serverSku,
  SOURCES,
  type Budget,
  type BudgetPlan,
  type ScaleGroup,
} from '../../core/deployment-budget';
import { packageRoot } from '../../core/paths';
import { table } from './format';
import { registeredFunctions } from './function-groups';
import { readInfra, resolveParameter, type BicepValue, type InfraParameters } from './infra-parameters';
import { UsageError, type CliIo } from './io';
import type { LocalArgs } from './local-args';

/** The app's infra/ when the command runs in an app made by `coremachine init`, else the package's own. */
function defaultInfraDir(cwd: string): string {
  const app = path.join(cwd, 'infra');
  return existsSync(path.join(app, 'main.bicep')) ? app : path.join(packageRoot(), 'infra');
}

/** Configuration the deployment must not go ahead with: one sentence naming the setting and the limit. */
class Refusal extends Error {}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * `coremachine doctor`: the preflight azd runs before provisioning (infra/hooks/preprovision.sh).
 * It reads what the deployment would get (the profile, maximumInstanceCount, PG_POOL_MAX and the
 * always-ready counts, from the environment as azd fills infra/main.parameters.json), the scale
 * groups the app registers, and prints the connection budget per group. Exit 0 when it fits, 1
 * when it does not or a setting is out of bounds, 2 for a wrong invocation. No database needed.
 */
export function runDoctor(args: LocalArgs, io: CliIo): number {
  const infraDir = typeof args.values.infra === 'string' ? path.resolve(io.cwd ?? process.cwd(), args.values.infra) : defaultInfraDir(io.cwd ?? process.cwd());
  if (!existsSync(path.join(infraDir, 'main.bicep')) || !existsSync(path.join(infraDir, 'main.parameters.json'))) {
    throw new UsageError(`--infra ${infraDir}: main.bicep and main.parameters.json are not both there`);
  }
  const infra = readInfra(infraDir);
  try {
    const { plan, describe } = planOf(infra, typeof args.values.profile === 'string' ? args.values.profile : undefined, io.env);
    const groups = scaleGroups(registeredFunctions());
    const budget = connectionBudget(groups, plan);
    io.out(
      `${[...describe, '', budgetTable(budget, plan), '', ...budget.limits.map((limit) => `${limit.subject}: ${limit.demand} ${limit.demand <= limit.limit ? '≤' : '>'} ${limit.limit} = ${limit.detail}`)].join('\n')}\n`,
    );
    if (budget.problems.length > 0) throw new Refusal(budget.problems.join('; '));
    if (!budget.fits) {
      io.err(`coremachine doctor: does not fit. ${advice(groups, plan, budget)}\n`);
      return 1;
    }
    const app = budget.limits[0];
    io.out(
      `fits: ${groups.length} scale groups, ${budget.instances} instances at most, ${app?.demand ?? 0} of ${app?.limit ?? 0} connections (${(app?.limit ?? 0) - (app?.demand ?? 0)} to spare)\n`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof Refusal)) throw error;
    io.err(`coremachine doctor: ${error.message}\n`);
    return 1;
  }
}

function planOf(infra: InfraParameters, requested: string | undefined, env: Env): { plan: BudgetPlan; describe: string[] } {
  const profileName = profileNameOf(infra, requested, env);
  const profile = infra.profiles[profileName] ?? {};
  const field = (key: string): BicepValue => {
    const value = profile[key];
    if (value === undefined) throw new Refusal(`main.bicep's databaseProfiles.${profileName} has no ${key}`);
    return value;
  };
  const number = (key: string): number => {
    const value = field(key);
    if (typeof value !== 'number') throw new Refusal(`databaseProfiles.${profileName}.${key} must be a number, not ${String(value)}`);
    return value;
  };
  const server = serverSku(String(field('skuName')));
  if (!server)
    throw new Refusal(
      `databaseProfiles.${profileName}.skuName ${String(field('skuName'))} is not in the table of server limits (core/deployment-budget.ts SERVER_SKUS); add it with its max_connections from ${SOURCES.maxConnections}`,
    );
  if (number('maxConnections') !== server.maxConnections) {
    throw new Refusal(
      `databaseProfiles.${profileName}.maxConnections says ${number('maxConnections')}, but ${server.name} allows ${server.maxConnections} (${SOURCES.maxConnections})`,
    );
  }

  const maximum = intParameter(infra, 'maximumInstanceCount', env);
  const instanceCap = number('instanceCap');
  const effectiveMaximum = Math.min(maximum.value, instanceCap);
  const pool = poolMaxOf(infra, env, number('poolMax'));
  const alwaysReady: Record<string, number> = {};
  for (const { group, param } of infra.alwaysReady) alwaysReady[group] = intParameter(infra, param, env).value;
  const pgbouncer =
    field('pgbouncer') === true
      ? { maxClientConn: number('connectionLimit'), defaultPoolSize: number('pgbouncerPoolSize'), pools: number('pgbouncerPools') }
      : undefined;

  const plan: BudgetPlan = {
    server,
    reserved: number('reserved'),
    headroom: number('headroom'),
    poolMax: pool.value,
    maximumInstanceCount: effectiveMaximum,
    alwaysReady,
    ...(pgbouncer ? { pgbouncer } : {}),
  };
  const capped = maximum.value > instanceCap ? `, capped at the profile's instanceCap ${instanceCap}` : '';
  return {
    plan,
    describe: [
      `profile ${profileName}: ${server.name} (${server.tier}, ${server.vCores} vCores, max_connections ${server.maxConnections}), ${pgbouncer ? `through the built-in PgBouncer (port ${String(field('port'))}, transaction mode)` : `the app connects directly (port ${String(field('port'))})`}`,
      `maximumInstanceCount ${effectiveMaximum} on-demand instances per scale group (${maximum.setting} ${maximum.value}, ${maximum.from}${capped})`,
      `PG_POOL_MAX ${pool.value} per instance (${pool.from})`,
      `always ready: ${
        Object.entries(alwaysReady)
          .map(([group, count]) => `${group} ${count}`)
          .join(', ') || 'none'
      }`,
    ],
  };
}

function profileNameOf(infra: InfraParameters, requested: string | undefined, env: Env): string {
  const known = Object.keys(infra.profiles);
  const allowed = (infra.params.databaseProfile?.allowed ?? known).map(String);
  const offered = known.filter((name) => allowed.includes(name));
  if (requested !== undefined) {
    if (!offered.includes(requested)) throw new UsageError(`unknown profile "${requested}": main.bicep offers ${offered.join(', ')}`);
    return requested;
  }
  const resolved = resolveParameter(infra, 'databaseProfile', env);
  const name = String(resolved.value ?? '');
  if (!offered.includes(name)) throw new Refusal(`${resolved.setting} is "${name}" (${resolved.from}): main.bicep offers ${offered.join(', ')}`);
  return name;
}

/** An int parameter as azd would pass it, inside the bounds main.bicep declares for it. */
function intParameter(infra: InfraParameters, name: string, env: Env): { value: number; from: string; setting: string } {
  const resolved = resolveParameter(infra, name, env);
  const param = infra.params[name];
  const text = String(resolved.value ?? '').trim();
  const label = resolved.setting === name ? name : `${resolved.setting} (parameter ${name})`;
  if (!/^-?\d+$/.test(text)) throw new Refusal(`${label} must be a whole number, not "${text}" (${resolved.from})`);
  const value = Number(text);
  const flex =
    name === 'maximumInstanceCount' ? `; ${FLEX_CONSUMPTION.lowestMaximumInstanceCount} is the lowest Flex Consumption accepts (${SOURCES.lowestMaximum})` : '';
  if (param?.minValue !== undefined && value < param.minValue)
    throw new Refusal(`${label} is ${value}, below ${param.minValue}, the lowest main.bicep accepts${flex}`);
  if (param?.maxValue !== undefined && value > param.maxValue)
    throw new Refusal(`${label} is ${value}, above ${param.maxValue}, the highest main.bicep accepts`);
  return { value, from: resolved.from, setting: resolved.setting };
}

/** PG_POOL_MAX: the profile's unless the environment sets it, then within loadConfig's bounds too (the app reads it with loadConfig). */
function poolMaxOf(infra: InfraParameters, env: Env, profilePool: number): { value: number; from: string } {
  const requested = intParameter(infra, 'poolMax', env);
  if (requested.value <= 0) return { value: profilePool, from: `the profile's poolMax; ${requested.setting} is not set` };
  if (requested.setting === 'PG_POOL_MAX') {
    try {
      loadConfig({ PG_POOL_MAX: String(requested.value) });
    } catch (error) {
      throw new Refusal(error instanceof Error ? error.message : String(error));
    }
  }
  return { value: requested.value, from: `${requested.from}, instead of the profile's ${profilePool}` };
}

function budgetTable(budget: Budget, plan: BudgetPlan): string {
  const rows = budget.groups.map((row) => [
    row.group,
    row.functions.length > 1 ? `${row.functions.length} functions` : (row.functions[0] ?? ''),
    String(row.onDemand),
    String(row.alwaysReady),
    String(plan.poolMax),
    String(row.connections),
  ]);
  const total = budget.groups.reduce((sum, row) => sum + row.connections, 0);
  rows.push([
    'total',
    `${budget.groups.length} scale groups`,
    String(budget.groups.reduce((sum, row) => sum + row.onDemand, 0)),
    String(budget.groups.reduce((sum, row) => sum + row.alwaysReady, 0)),
    '',
    String(total),
  ]);
  return table(['SCALE GROUP', 'FUNCTIONS', 'MAX INSTANCES', 'ALWAYS READY', 'PG_POOL_MAX', 'CONNECTIONS'], rows);
}

/** Which limit broke, and what would fit instead, naming the settings an operator changes. */
function advice(groups: readonly ScaleGroup[], plan: BudgetPlan, budget: Budget): string {
  const broken = budget.limits.filter((limit) => limit.demand > limit.limit);
  const lines = broken.map((limit) => `${limit.subject} ${limit.demand} > ${limit.limit} (${limit.detail}).`);
  if (broken.some((limit) => limit.subject === 'PgBouncer server connections'))
    lines.push("Lower the profile's pgbouncerPoolSize (pgbouncer.default_pool_size) or choose a server with more max_connections.");
  if (broken.some((limit) => limit.subject === 'app connections')) {
    const fit = largestThatFits(groups, plan);
    const lowest = FLEX_CONSUMPTION.lowestMaximumInstanceCount;
    const demand = `${groups.length} scale groups × maximumInstanceCount ${plan.maximumInstanceCount} (+ ${budget.instances - groups.length * plan.maximumInstanceCount} always ready) × PG_POOL_MAX ${plan.poolMax}`;
    const pool = fit.poolMax >= 1 ? `lower PG_POOL_MAX to ${fit.poolMax}` : 'no PG_POOL_MAX ≥ 1 fits these instances';
    const instances =
      fit.maximumInstanceCount >= lowest
        ? `lower maximumInstanceCount (the profile's instanceCap, or COREMACHINE_MAXIMUM_INSTANCE_COUNT) to ${fit.maximumInstanceCount}`
        : `maximumInstanceCount cannot go below ${lowest} (Flex Consumption's lowest)`;
    lines.push(`The app may open ${demand}: ${pool}; ${instances}; or choose a profile with a larger server or PgBouncer.`);
  }
  return lines.join('\n  ');
}
