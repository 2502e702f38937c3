/**
 * The capacity table in docs/deploying.md is what bench/capacity-model.ts computes from the stored
 * measurements (bench/capacity-costs.json) and the Bicep as it stands: a changed limit, price,
 * profile or measurement that was not regenerated (`npm run bench -- --capacity-stored`) fails here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readDeploymentShape } from '../bench/capacity-infra';
import { capacitySectionOf, predict, renderCapacitySection, replaceCapacitySection, standardOperationsUsd, type MeasuredCosts } from '../bench/capacity-model';

const root = path.join(__dirname, '..');
const stored = JSON.parse(readFileSync(path.join(root, 'bench', 'capacity-costs.json'), 'utf8')) as MeasuredCosts;
const shape = readDeploymentShape(root);

test('docs/deploying.md holds exactly the capacity section the model renders from the stored costs', () => {
  const docs = readFileSync(path.join(root, 'docs', 'deploying.md'), 'utf8');
  expect(capacitySectionOf(docs)).toBe(renderCapacitySection(stored, shape));
});

test('the deployment shape comes from the Bicep and host.json', () => {
  expect(shape.serviceBusTier).toBe('Standard');
  expect(shape.profiles.map((p) => [p.name, p.skuName])).toEqual([
    ['Burstable', 'Standard_B2s'],
    ['GeneralPurpose', 'Standard_D2ds_v5'],
  ]);
  // Flex accepts no fewer than 40 on-demand instances per scale group.
  for (const profile of shape.profiles) expect(profile.maximumInstanceCount).toBeGreaterThanOrEqual(40);
  expect(shape.host).toEqual({ maxConcurrentCalls: 16, maxMessageBatchSize: 32 });
});

/** Round numbers, so each limit can be checked by hand. */
const costs: MeasuredCosts = {
  ...stored,
  perTask: {
    serviceBus: { send: 0.1, receive: 0.1, complete: 0.1, abandon: 0, renew: 0, schedule: 0, deadLetter: 0, total: 0.3 },
    serviceBusBytes: 500,
    functionsExecutions: 0.01,
    transactions: 0.02,
    walBytes: 1024,
    walSyncs: 0.01,
    nodeCpuMs: 0.1,
    postgresCpuMs: 0.1,
  },
};

test('each limit divides a documented budget by the measured cost per task, and the smallest binds', () => {
  const [burstable, generalPurpose, premium] = predict(costs, shape);
  const limits = (p: typeof burstable) => Object.fromEntries((p?.limits ?? []).map((l) => [l.name, Math.round(l.tasksPerSecond)]));
  // B2s: 1,000 credits / 0.3; 0.4 vCore × 1,000 / 0.1 ms; 120 IOPS / 0.01; 15 MiB/s / 1 KiB; 40 × 1,000 / 0.1 ms.
  expect(limits(burstable)).toEqual({
    'Service Bus Standard credits': 3333,
    'PostgreSQL CPU': 4000,
    'PostgreSQL storage IOPS': 12000,
    'PostgreSQL storage bandwidth': 15360,
    'Flex instances (CPU)': 400000,
  });
  expect(burstable?.binding).toBe('Service Bus Standard credits');
  expect(limits(generalPurpose)['PostgreSQL CPU']).toBe(20000);
  expect(limits(generalPurpose)['PostgreSQL storage bandwidth']).toBe(25600);
  // Premium, 1 MU: 4 MB/s of ingress and egress / 500 bytes a task.
  expect(limits(premium)['Service Bus Premium 1 MU throughput']).toBe(8000);
  expect(premium?.binding).toBe('Service Bus Premium 1 MU throughput');
  expect(premium?.tasksPerSecond).toBe(8000);
});

test('a month at the predicted rate prices Standard operations by tier, the fixed charges and Flex execution time', () => {
  expect(standardOperationsUsd(13)).toBe(0);
  expect(standardOperationsUsd(100)).toBeCloseTo(87 * 0.8);
  expect(standardOperationsUsd(3000)).toBeCloseTo(87 * 0.8 + 2400 * 0.5 + 500 * 0.2);
  const [burstable] = predict(costs, shape);
  const tasks = (10_000 / 3) * 730 * 3600;
  const database = 0.034 * 730 + 32 * 0.115;
  const bus = (9.81 / 730) * 730 + standardOperationsUsd((tasks * 0.3) / 1e6);
  const functions = tasks * 2 * 0.0001 * 0.000026;
  expect(burstable?.monthlyFixedUsd).toBeCloseTo(database + 9.81);
  expect(burstable?.usdPerMillionTasks).toBeCloseTo((database + bus + functions) / (tasks / 1e6), 6);
});

test('the section is replaced between its markers, and a document without them is refused', () => {
  const section = renderCapacitySection(costs, shape);
  const replaced = replaceCapacitySection(`before\n${renderCapacitySection(stored, shape)}\nafter\n`, section);
  expect(replaced).toBe(`before\n${section}\nafter\n`);
  expect(() => replaceCapacitySection('no markers here', section)).toThrow(/no generated capacity section/);
});
