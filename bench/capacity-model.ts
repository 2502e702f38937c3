import { serverSku } from '../core/deployment-budget';
import { SERVICE_BUS_OPERATIONS, type ServiceBusOperation } from '../core/transport/operation-counts';
import type { DeploymentShape } from './capacity-infra';
import {
  FLEX_ASSUMPTIONS,
  HOURS_PER_MONTH,
  PRICES,
  SERVER_CAPACITY,
  SERVICE_BUS_LIMITS,
  SERVICE_BUS_STANDARD_OPERATION_TIERS,
  STORAGE,
  type ListPrice,
  type Sourced,
} from './capacity-limits';

/**
 * The capacity model: measured per-task costs of a CoreMachine run, divided into the documented
 * limits of each deployment profile, give the tasks/s each resource allows; the smallest binds.
 * Prices at that rate give the cost per million tasks. Pure: bench/capacity.ts measures and writes,
 * tests/capacity-model.test.ts checks docs/deploying.md against what this renders.
 */

/** What bench/capacity-costs.json holds: medians over the runs of `npm run bench -- --capacity`. */
export interface MeasuredCosts {
  measuredAt: string;
  command: string;
  environment: string;
  n: number;
  /** Stages of the job, each of n tasks. */
  stages: number;
  runs: number;
  workers: number;
  batch: number;
  tasksPerSecond: number;
  perTask: {
    /** Physical Service Bus operations by kind, and their total. */
    serviceBus: Record<ServiceBusOperation | 'total', number>;
    /** Message bytes sent + received. */
    serviceBusBytes: number;
    functionsExecutions: number;
    transactions: number;
    walBytes: number;
    walSyncs: number;
    nodeCpuMs: number;
    postgresCpuMs: number;
  };
}

export interface Limit {
  /** What the table's row calls it (the same resource in every profile). */
  row: string;
  /** What exactly binds, in this profile. */
  name: string;
  tasksPerSecond: number;
  formula: string;
}

export interface Prediction {
  label: string;
  database: string;
  serviceBus: string;
  instances: number;
  limits: Limit[];
  tasksPerSecond: number;
  binding: string;
  monthlyFixedUsd: number;
  monthlyTotalUsd: number;
  usdPerMillionTasks: number;
}

const MIB = 1024 * 1024;

function fmt(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return '–';
  const places = digits ?? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 3);
  return value.toLocaleString('en-US', { minimumFractionDigits: 0, maximumFractionDigits: places });
}

/** Dollars: cents, four places below a dollar, two significant digits below a cent (a price per GB-second). */
function usd(value: number): string {
  if (value > 0 && value < 0.01) return `$${value.toPrecision(2)}`;
  return `$${value.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: value < 1 ? 4 : 2 })}`;
}

function known(price: ListPrice): number {
  if (price.usd === null) throw new Error(`capacity: the price per ${price.per} is not verified; it cannot be used`);
  return price.usd;
}

/** Standard operations a month in millions, priced by tier (the first 13M are in the base charge). */
export function standardOperationsUsd(millions: number): number {
  let cost = 0;
  let from = 0;
  for (const tier of SERVICE_BUS_STANDARD_OPERATION_TIERS) {
    const upto = Math.min(millions, tier.uptoMillions);
    if (upto > from) cost += (upto - from) * tier.usdPerMillion;
    from = tier.uptoMillions;
    if (millions <= from) break;
  }
  return cost;
}

interface Scenario {
  label: string;
  profile: DeploymentShape['profiles'][number];
  serviceBus: { tier: 'Standard' } | { tier: 'Premium'; messagingUnits: number };
}

function scenarios(shape: DeploymentShape): Scenario[] {
  if (shape.serviceBusTier !== 'Standard') throw new Error(`capacity: the model knows Service Bus Standard; the Bicep deploys ${shape.serviceBusTier}`);
  const deployed = shape.profiles.map((profile, index): Scenario => ({
    label: `${profile.name}${index === 0 ? ' (default)' : ''}`,
    profile,
    serviceBus: { tier: 'Standard' },
  }));
  const largest = shape.profiles[shape.profiles.length - 1];
  // Not in the Bicep: what Premium would change for the largest profile.
  const whatIf: Scenario[] = largest
    ? [{ label: `${largest.name} + Premium (what-if)`, profile: largest, serviceBus: { tier: 'Premium', messagingUnits: 1 } }]
    : [];
  return [...deployed, ...whatIf];
}

export function predict(costs: MeasuredCosts, shape: DeploymentShape): Prediction[] {
  const storage = STORAGE[shape.storageGb];
  if (!storage) throw new Error(`capacity: no storage limits for ${shape.storageGb} GiB in bench/capacity-limits.ts`);
  const c = costs.perTask;
  const gbSecondsPerTask = ((shape.instanceMemoryMb / 1024) * c.nodeCpuMs) / 1000 / FLEX_ASSUMPTIONS.vCpuPerInstance.value;
  return scenarios(shape).map(({ label, profile, serviceBus }) => {
    const sku = serverSku(profile.skuName);
    const capacity = SERVER_CAPACITY[profile.skuName];
    if (!sku || !capacity) throw new Error(`capacity: no limits for ${profile.skuName} in bench/capacity-limits.ts`);
    const iops = Math.min(storage.iops.value, capacity.vmIops.value);
    const mibPerSecond = Math.min(storage.mibPerSecond.value, capacity.vmMiBPerSecond.value);
    const instanceCpu = FLEX_ASSUMPTIONS.vCpuPerInstance.value;
    const limits: Limit[] = [
      serviceBus.tier === 'Standard'
        ? {
            row: 'Service Bus',
            name: 'Service Bus Standard credits',
            tasksPerSecond: SERVICE_BUS_LIMITS.standardCreditsPerSecond.value / c.serviceBus.total,
            formula: `${fmt(SERVICE_BUS_LIMITS.standardCreditsPerSecond.value)} credits/s ÷ ${fmt(c.serviceBus.total)} operations/task`,
          }
        : {
            row: 'Service Bus',
            name: `Service Bus Premium ${serviceBus.messagingUnits} MU throughput`,
            tasksPerSecond: (serviceBus.messagingUnits * SERVICE_BUS_LIMITS.premiumBytesPerSecondPerMu.value) / c.serviceBusBytes,
            formula: `${serviceBus.messagingUnits} × 4 MB/s ÷ ${fmt(c.serviceBusBytes)} bytes/task`,
          },
      {
        row: 'PostgreSQL CPU',
        name: 'PostgreSQL CPU',
        tasksPerSecond: (capacity.sustainedVCores.value * 1000) / c.postgresCpuMs,
        formula: `${fmt(capacity.sustainedVCores.value)} vCore × 1,000 ms/s ÷ ${fmt(c.postgresCpuMs)} ms/task`,
      },
      {
        row: 'PostgreSQL storage IOPS',
        name: 'PostgreSQL storage IOPS',
        tasksPerSecond: iops / c.walSyncs,
        formula: `${fmt(iops)} IOPS ÷ ${fmt(c.walSyncs)} WAL syncs/task`,
      },
      {
        row: 'PostgreSQL storage bandwidth',
        name: 'PostgreSQL storage bandwidth',
        tasksPerSecond: (mibPerSecond * MIB) / c.walBytes,
        formula: `${fmt(mibPerSecond)} MiB/s ÷ ${fmt(c.walBytes)} WAL bytes/task`,
      },
      {
        row: 'Flex instances (CPU)',
        name: 'Flex instances (CPU)',
        tasksPerSecond: (profile.maximumInstanceCount * instanceCpu * 1000) / c.nodeCpuMs,
        formula: `${profile.maximumInstanceCount} instances × ${fmt(instanceCpu)} core × 1,000 ms/s ÷ ${fmt(c.nodeCpuMs)} ms/task`,
      },
    ];
    const bound = limits.reduce((lowest, limit) => (limit.tasksPerSecond < lowest.tasksPerSecond ? limit : lowest));
    const tasksPerMonth = bound.tasksPerSecond * HOURS_PER_MONTH * 3600;
    const database = known(capacity.pricePerHour) * HOURS_PER_MONTH + shape.storageGb * known(PRICES.postgresStoragePerGbMonth);
    const busFixed =
      serviceBus.tier === 'Standard'
        ? known(PRICES.serviceBusStandardBasePerHour) * HOURS_PER_MONTH
        : serviceBus.messagingUnits * known(PRICES.serviceBusPremiumPerMuHour) * HOURS_PER_MONTH;
    const busOperations = serviceBus.tier === 'Standard' ? standardOperationsUsd((tasksPerMonth * c.serviceBus.total) / 1e6) : 0;
    const functions = tasksPerMonth * gbSecondsPerTask * known(PRICES.flexExecutionTimePerGbSecond);
    const monthlyFixedUsd = database + busFixed;
    const monthlyTotalUsd = monthlyFixedUsd + busOperations + functions;
    return {
      label,
      database: `${profile.skuName.replace('Standard_', '')} (${fmt(capacity.sustainedVCores.value)} of ${sku.vCores} vCores sustained)`,
      serviceBus: serviceBus.tier === 'Standard' ? 'Standard' : `Premium, ${serviceBus.messagingUnits} MU`,
      instances: profile.maximumInstanceCount,
      limits,
      tasksPerSecond: bound.tasksPerSecond,
      binding: bound.name,
      monthlyFixedUsd,
      monthlyTotalUsd,
      usdPerMillionTasks: monthlyTotalUsd / (tasksPerMonth / 1e6),
    };
  });
}

function measuredTable(costs: MeasuredCosts): string[] {
  const c = costs.perTask;
  return [
    '| measured cost per task | value |',
    '|---|---:|',
    `| Service Bus operations (physical messages) | ${fmt(c.serviceBus.total)} |`,
    ...SERVICE_BUS_OPERATIONS.map((kind) => `|   ${kind} | ${fmt(c.serviceBus[kind])} |`),
    `| Service Bus bytes (sent + received: body, id, properties; no AMQP framing) | ${fmt(c.serviceBusBytes)} |`,
    `| Functions executions (a batch of up to ${fmt(costs.batch)} tasks here) | ${fmt(c.functionsExecutions, 4)} |`,
    `| database transactions | ${fmt(c.transactions)} |`,
    `| WAL bytes | ${fmt(c.walBytes)} |`,
    `| WAL syncs | ${fmt(c.walSyncs, 4)} |`,
    `| node CPU ms (engine, queues and workers) | ${fmt(c.nodeCpuMs)} |`,
    `| PostgreSQL backend CPU ms | ${fmt(c.postgresCpuMs)} |`,
  ];
}

function predictionTable(predictions: readonly Prediction[]): string[] {
  const names = predictions[0]?.limits.map((limit) => limit.row) ?? [];
  const row = (label: string, cells: string[]) => `| ${label} | ${cells.join(' | ')} |`;
  return [
    row(
      '',
      predictions.map((p) => p.label),
    ),
    `|---|${predictions.map(() => '---:').join('|')}|`,
    row(
      'PostgreSQL',
      predictions.map((p) => p.database),
    ),
    row(
      'Service Bus',
      predictions.map((p) => p.serviceBus),
    ),
    row(
      'Flex instances per scale group',
      predictions.map((p) => String(p.instances)),
    ),
    ...names.map((name, i) =>
      row(
        `${name}, tasks/s`,
        predictions.map((p) => {
          const limit = p.limits[i] as Limit;
          return `${fmt(limit.tasksPerSecond, 0)} (${limit.formula})`;
        }),
      ),
    ),
    row(
      '**predicted tasks/s**',
      predictions.map((p) => `**${fmt(p.tasksPerSecond, 0)}**`),
    ),
    row(
      'binding limit',
      predictions.map((p) => p.binding),
    ),
    row(
      'fixed cost a month (database, Service Bus)',
      predictions.map((p) => usd(p.monthlyFixedUsd)),
    ),
    row(
      '**$ per million tasks at that rate**',
      predictions.map((p) => `**${usd(p.usdPerMillionTasks)}**`),
    ),
  ];
}

function sourcesTable(shape: DeploymentShape): string[] {
  const figure = (name: string, s: Sourced) => `| ${name} | ${fmt(s.value)} | ${s.note} | ${s.source} |`;
  const price = (name: string, p: ListPrice) =>
    `| ${name} | ${p.usd === null ? '**not verified**' : `${usd(p.usd)} per ${p.per}`} | ${p.region}, ${p.asOf}: ${p.note} | ${p.source} |`;
  const storage = STORAGE[shape.storageGb];
  const lines = [
    '| figure | value | what and when | source |',
    '|---|---:|---|---|',
    figure('Service Bus Standard credits a second', SERVICE_BUS_LIMITS.standardCreditsPerSecond),
    figure('Service Bus Premium bytes a second per MU', SERVICE_BUS_LIMITS.premiumBytesPerSecondPerMu),
  ];
  for (const [sku, capacity] of Object.entries(SERVER_CAPACITY)) {
    lines.push(
      figure(`${sku} sustained vCores`, capacity.sustainedVCores),
      figure(`${sku} IOPS`, capacity.vmIops),
      figure(`${sku} MiB/s`, capacity.vmMiBPerSecond),
      price(`${sku} compute`, capacity.pricePerHour),
    );
  }
  if (storage) lines.push(figure(`storage ${shape.storageGb} GiB IOPS`, storage.iops), figure(`storage ${shape.storageGb} GiB MiB/s`, storage.mibPerSecond));
  lines.push(
    figure('Flex cores per instance', FLEX_ASSUMPTIONS.vCpuPerInstance),
    price('PostgreSQL storage', PRICES.postgresStoragePerGbMonth),
    price('Service Bus Standard base', PRICES.serviceBusStandardBasePerHour),
    price('Service Bus Standard operations', PRICES.serviceBusStandardOperationsPrice),
    price('Service Bus Premium', PRICES.serviceBusPremiumPerMuHour),
    price('Flex execution time', PRICES.flexExecutionTimePerGbSecond),
    price('Flex executions', PRICES.flexExecutionsPerMillion),
  );
  return lines;
}

export const CAPACITY_BEGIN = '<!-- capacity:begin — generated by `npm run bench -- --capacity` from bench/capacity-costs.json; do not edit by hand -->';
export const CAPACITY_END = '<!-- capacity:end -->';

/** The generated part of docs/deploying.md's capacity section, markers included. */
export function renderCapacitySection(costs: MeasuredCosts, shape: DeploymentShape): string {
  const predictions = predict(costs, shape);
  return [
    CAPACITY_BEGIN,
    '',
    `Measured ${costs.measuredAt} with \`${costs.command}\` (${costs.environment}; N = ${fmt(costs.n)} tasks per stage × ${costs.stages} stage${costs.stages === 1 ? '' : 's'}, ${costs.runs} run(s), ` +
      `${costs.workers} task batches of ${costs.batch} in flight; ${fmt(costs.tasksPerSecond, 0)} tasks/s on that machine, medians):`,
    '',
    ...measuredTable(costs),
    '',
    `The Bicep's profiles (\`infra/main.bicep\` \`databaseProfiles\`, ${shape.storageGb} GiB storage, ${shape.instanceMemoryMb} MB instances, Service Bus ` +
      `${shape.serviceBusTier}; \`host.json\`: ${shape.host.maxConcurrentCalls} concurrent calls, batches of ${shape.host.maxMessageBatchSize}), each limit in tasks/s:`,
    '',
    ...predictionTable(predictions),
    '',
    `Prices are for ${HOURS_PER_MONTH} hours at the predicted rate: the database and the Service Bus base or messaging units, Standard operations by ` +
      'tier, and Flex execution time as instance memory × node CPU per task (an instance billed only while its core is busy). Flex executions are ' +
      'left out (price not verified); so are storage transactions, bandwidth, Application Insights and the Functions storage account.',
    '',
    ...sourcesTable(shape),
    '',
    CAPACITY_END,
  ].join('\n');
}

/** Replaces the generated section of a document (between the markers) with `section`. */
export function replaceCapacitySection(document: string, section: string): string {
  const begin = document.indexOf(CAPACITY_BEGIN);
  const end = document.indexOf(CAPACITY_END);
  if (begin < 0 || end < begin) throw new Error('capacity: the document has no generated capacity section (its begin and end markers)');
  return document.slice(0, begin) + section + document.slice(end + CAPACITY_END.length);
}

/** The generated section as it stands in a document, or undefined. */
export function capacitySectionOf(document: string): string | undefined {
  const begin = document.indexOf(CAPACITY_BEGIN);
  const end = document.indexOf(CAPACITY_END);
  return begin < 0 || end < begin ? undefined : document.slice(begin, end + CAPACITY_END.length);
}
