/**
 * The connection budget of an Azure deployment: how many PostgreSQL connections the Function app
 * can open at most, against what the server (or its built-in PgBouncer) accepts. Pure code: the
 * test (tests/budget.test.ts), the preflight (`coremachine doctor`) and the Bicep's comments
 * (infra/main.bicep `databaseProfiles`) all use this one formula and this one table of limits.
 *
 * Flex Consumption scales per function group: all HTTP functions are one group, every other
 * function (each Service Bus trigger, the timer) scales on its own, each group up to
 * maximumInstanceCount on-demand instances, plus its always-ready instances. Every instance has
 * its own pool of PG_POOL_MAX connections. So the app may hold
 *
 *   Σ over groups (maximumInstanceCount + alwaysReady[group]) × PG_POOL_MAX
 *
 * connections, and that sum must fit max_connections − reserved − headroom when the app connects
 * directly, or PgBouncer's max_client_conn through the pooler, whose own server connections
 * (default_pool_size × user/database pairs) then fit max_connections − reserved − headroom.
 */

/** Where each figure below comes from (docs/deploying.md "Scaling and connections" lists them in one table). */
export const SOURCES = {
  maxConnections: 'https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-limits',
  pgbouncerParameters: 'https://learn.microsoft.com/azure/postgresql/flexible-server/server-parameters-table-pgbouncer',
  pgbouncer: 'https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-pgbouncer',
  perFunctionScaling: 'https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#per-function-scaling',
  alwaysReadyNames: 'https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#set-always-ready-instance-counts',
  maximumPerGroup: 'https://github.com/Azure/azure-rest-api-specs/pull/45083',
  lowestMaximum: 'https://github.com/MicrosoftDocs/azure-docs/pull/128255',
} as const;

/**
 * maximumInstanceCount: 40 is the lowest Flex Consumption accepts (below is a preview in a few
 * regions: MicrosoftDocs/azure-docs PR 128255, Azure/azure-functions-host issue 10523), 1000 the highest.
 */
export const FLEX_CONSUMPTION = { lowestMaximumInstanceCount: 40, highestMaximumInstanceCount: 1000 } as const;

/** Azure keeps 15 of max_connections for physical replication and monitoring (concepts-limits). */
export const AZURE_RESERVED_CONNECTIONS = 15;

/** The built-in PgBouncer's parameter ranges and defaults (server-parameters-table-pgbouncer). */
export const PGBOUNCER = {
  maxClientConn: { min: 1, max: 50_000, default: 5000 },
  defaultPoolSize: { min: 1, max: 4950, default: 50 },
} as const;

export type ServerTier = 'Burstable' | 'GeneralPurpose' | 'MemoryOptimized';

export interface ServerSku {
  name: string;
  tier: ServerTier;
  vCores: number;
  memoryGiB: number;
  /** Default max_connections of the SKU (concepts-limits). */
  maxConnections: number;
}

const sku = (name: string, tier: ServerTier, vCores: number, memoryGiB: number, maxConnections: number): ServerSku => ({
  name,
  tier,
  vCores,
  memoryGiB,
  maxConnections,
});

/** Default max_connections per SKU, as SOURCES.maxConnections lists them. */
export const SERVER_SKUS: readonly ServerSku[] = Object.freeze([
  sku('Standard_B1ms', 'Burstable', 1, 2, 50),
  sku('Standard_B2s', 'Burstable', 2, 4, 429),
  sku('Standard_B2ms', 'Burstable', 2, 8, 859),
  sku('Standard_B4ms', 'Burstable', 4, 16, 1718),
  sku('Standard_B8ms', 'Burstable', 8, 32, 3437),
  sku('Standard_B12ms', 'Burstable', 12, 48, 5000),
  sku('Standard_B16ms', 'Burstable', 16, 64, 5000),
  sku('Standard_B20ms', 'Burstable', 20, 80, 5000),
  sku('Standard_D2ds_v5', 'GeneralPurpose', 2, 8, 859),
  sku('Standard_D4ds_v5', 'GeneralPurpose', 4, 16, 1718),
  sku('Standard_D8ds_v5', 'GeneralPurpose', 8, 32, 3437),
  sku('Standard_D16ds_v5', 'GeneralPurpose', 16, 64, 5000),
  sku('Standard_E2ds_v5', 'MemoryOptimized', 2, 16, 1718),
  sku('Standard_E4ds_v5', 'MemoryOptimized', 4, 32, 3437),
  sku('Standard_E8ds_v5', 'MemoryOptimized', 8, 64, 5000),
]);

export function serverSku(name: string): ServerSku | undefined {
  return SERVER_SKUS.find((candidate) => candidate.name === name);
}

/** The built-in PgBouncer runs on General Purpose and Memory Optimized only; on Burstable it is hidden (SOURCES.pgbouncerParameters). */
export function hasBuiltInPgBouncer(tier: ServerTier): boolean {
  return tier !== 'Burstable';
}

/** One function the app registers with the host: the `app.<kind>` call and the function's name. */
export interface FunctionRegistration {
  kind: string;
  name: string;
}

export interface ScaleGroup {
  /** The group's name as Flex's alwaysReady setting spells it: `http`, or `function:<name>`. */
  name: string;
  functions: readonly string[];
}

/** `app.http` and its per-method shorthands. */
const HTTP_KINDS = new Set(['http', 'get', 'post', 'put', 'patch', 'deleteRequest']);

/**
 * The scale groups of an app: every HTTP function in one `http` group, every other function in a
 * group of its own. (Durable and Blob-via-Event-Grid functions would share a group as well; the
 * app registers neither, and counting them one group each would overestimate, never underestimate.)
 */
export function scaleGroups(registrations: readonly FunctionRegistration[]): ScaleGroup[] {
  const names = registrations.map((registration) => registration.name);
  const duplicate = names.find((name, index) => names.indexOf(name) !== index);
  if (duplicate !== undefined) throw new Error(`function "${duplicate}" is registered twice; the host refuses duplicate names`);
  const http = registrations.filter((registration) => HTTP_KINDS.has(registration.kind)).map((registration) => registration.name);
  const others = registrations
    .filter((registration) => !HTTP_KINDS.has(registration.kind))
    .map((registration) => ({ name: `function:${registration.name}`, functions: [registration.name] }));
  return [...(http.length > 0 ? [{ name: 'http', functions: http }] : []), ...others];
}

export interface BudgetPlan {
  server: ServerSku;
  reserved: number;
  /** Connections kept free for migrations, `coremachine db`, the portal and an operator's psql. */
  headroom: number;
  /** PG_POOL_MAX: connections per instance. */
  poolMax: number;
  /** Effective maximumInstanceCount: on-demand instances per group. */
  maximumInstanceCount: number;
  /** Always-ready instances per group name (Flex counts them apart from the on-demand maximum). */
  alwaysReady: Readonly<Record<string, number>>;
  /** Set when the app connects through the built-in PgBouncer. */
  pgbouncer?: { maxClientConn: number; defaultPoolSize: number; pools: number };
}

export interface GroupBudget {
  group: string;
  functions: readonly string[];
  onDemand: number;
  alwaysReady: number;
  connections: number;
}

export interface BudgetLimit {
  /** What is counted: the app's connections, or PgBouncer's own server connections. */
  subject: 'app connections' | 'PgBouncer server connections';
  demand: number;
  limit: number;
  /** How the limit is made up, with the setting names an operator would change. */
  detail: string;
}

export interface Budget {
  groups: GroupBudget[];
  instances: number;
  limits: BudgetLimit[];
  /** Configuration that Azure would refuse or that makes the plan meaningless, one sentence each. */
  problems: string[];
  fits: boolean;
}

export function connectionBudget(groups: readonly ScaleGroup[], plan: BudgetPlan): Budget {
  const problems = planProblems(groups, plan);
  const rows = groups.map((group): GroupBudget => {
    const alwaysReady = plan.alwaysReady[group.name] ?? 0;
    return {
      group: group.name,
      functions: group.functions,
      onDemand: plan.maximumInstanceCount,
      alwaysReady,
      connections: (plan.maximumInstanceCount + alwaysReady) * plan.poolMax,
    };
  });
  const appConnections = rows.reduce((sum, row) => sum + row.connections, 0);
  const serverUsable = plan.server.maxConnections - plan.reserved - plan.headroom;
  const serverDetail = `max_connections ${plan.server.maxConnections} (${plan.server.name}) − ${plan.reserved} reserved by Azure − ${plan.headroom} headroom`;
  const limits: BudgetLimit[] = plan.pgbouncer
    ? [
        {
          subject: 'app connections',
          demand: appConnections,
          limit: plan.pgbouncer.maxClientConn,
          detail: "pgbouncer.max_client_conn (the profile's connectionLimit)",
        },
        {
          subject: 'PgBouncer server connections',
          demand: plan.pgbouncer.defaultPoolSize * plan.pgbouncer.pools,
          limit: serverUsable,
          detail: `pgbouncer.default_pool_size ${plan.pgbouncer.defaultPoolSize} × ${plan.pgbouncer.pools} user/database pairs, against ${serverDetail}`,
        },
      ]
    : [{ subject: 'app connections', demand: appConnections, limit: serverUsable, detail: serverDetail }];
  const instances = rows.reduce((sum, row) => sum + row.onDemand + row.alwaysReady, 0);
  return { groups: rows, instances, limits, problems, fits: problems.length === 0 && limits.every((limit) => limit.demand <= limit.limit) };
}

function planProblems(groups: readonly ScaleGroup[], plan: BudgetPlan): string[] {
  const problems: string[] = [];
  const { lowestMaximumInstanceCount: lowest, highestMaximumInstanceCount: highest } = FLEX_CONSUMPTION;
  if (!Number.isInteger(plan.maximumInstanceCount) || plan.maximumInstanceCount < lowest || plan.maximumInstanceCount > highest) {
    problems.push(`maximumInstanceCount ${plan.maximumInstanceCount} is outside ${lowest}–${highest}, the range Flex Consumption accepts`);
  }
  if (!Number.isInteger(plan.poolMax) || plan.poolMax < 1) problems.push(`PG_POOL_MAX ${plan.poolMax} is not a whole number of connections ≥ 1`);
  if (plan.server.maxConnections - plan.reserved - plan.headroom < 1)
    problems.push(`${plan.server.name} leaves no connection after ${plan.reserved} reserved and ${plan.headroom} headroom`);
  if (plan.pgbouncer) {
    if (!hasBuiltInPgBouncer(plan.server.tier))
      problems.push(`${plan.server.name} is ${plan.server.tier}: the built-in PgBouncer runs on General Purpose and Memory Optimized only`);
    const { maxClientConn, defaultPoolSize } = PGBOUNCER;
    if (plan.pgbouncer.maxClientConn < maxClientConn.min || plan.pgbouncer.maxClientConn > maxClientConn.max)
      problems.push(`pgbouncer.max_client_conn ${plan.pgbouncer.maxClientConn} is outside ${maxClientConn.min}–${maxClientConn.max}`);
    if (plan.pgbouncer.defaultPoolSize < defaultPoolSize.min || plan.pgbouncer.defaultPoolSize > defaultPoolSize.max)
      problems.push(`pgbouncer.default_pool_size ${plan.pgbouncer.defaultPoolSize} is outside ${defaultPoolSize.min}–${defaultPoolSize.max}`);
  }
  const groupNames = new Set(groups.map((group) => group.name));
  for (const [name, count] of Object.entries(plan.alwaysReady)) {
    if (count > 0 && !groupNames.has(name)) problems.push(`always-ready instances are set for "${name}", which is not a scale group the app registers`);
    if (!Number.isInteger(count) || count < 0) problems.push(`always-ready count ${count} for "${name}" is not a whole number ≥ 0`);
  }
  return problems;
}

/** The largest PG_POOL_MAX and maximumInstanceCount that would fit, the other kept as planned (0 when none does). */
export function largestThatFits(groups: readonly ScaleGroup[], plan: BudgetPlan): { poolMax: number; maximumInstanceCount: number } {
  const clientLimit = connectionBudget(groups, plan).limits[0]?.limit ?? 0;
  const alwaysReady = groups.reduce((sum, group) => sum + (plan.alwaysReady[group.name] ?? 0), 0);
  const instances = groups.length * plan.maximumInstanceCount + alwaysReady;
  return {
    poolMax: instances > 0 ? Math.floor(clientLimit / instances) : 0,
    maximumInstanceCount: groups.length > 0 ? Math.max(0, Math.floor((Math.floor(clientLimit / plan.poolMax) - alwaysReady) / groups.length)) : 0,
  };
}
