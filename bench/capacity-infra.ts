import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readInfra, resolveParameter } from '../bin/cli/infra-parameters';

/**
 * What `azd up` deploys, as far as capacity goes: read from infra/ and host.json (with azd's
 * defaults, no environment), so the capacity model always describes the Bicep as it stands.
 */
export interface DeploymentShape {
  /** main.bicep `databaseProfiles`, each with the instance cap it puts on every Flex scale group. */
  profiles: Array<{ name: string; skuName: string; maximumInstanceCount: number; poolMax: number; pgbouncer: boolean }>;
  instanceMemoryMb: number;
  /** infra/modules/servicebus.bicep's sku. */
  serviceBusTier: string;
  /** infra/modules/postgres.bicep's storageSizeGB. */
  storageGb: number;
  /** host.json: how many batches one instance runs at once, and the most messages in a batch. */
  host: { maxConcurrentCalls: number; maxMessageBatchSize: number };
}

function match(text: string, pattern: RegExp, what: string): string {
  const found = pattern.exec(text)?.[1];
  if (found === undefined) throw new Error(`capacity: ${what} not found`);
  return found;
}

export function readDeploymentShape(root: string): DeploymentShape {
  const infraDir = path.join(root, 'infra');
  const infra = readInfra(infraDir);
  const number = (value: unknown, what: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed)) throw new Error(`capacity: ${what} is not a number: ${String(value)}`);
    return parsed;
  };
  // As azd would pass them with nothing set in the environment.
  const maximumInstanceCount = number(resolveParameter(infra, 'maximumInstanceCount', {}).value, 'maximumInstanceCount');
  const instanceMemoryMb = number(resolveParameter(infra, 'instanceMemoryMB', {}).value, 'instanceMemoryMB');
  const profiles = Object.entries(infra.profiles).map(([name, fields]) => ({
    name,
    skuName: String(fields.skuName),
    // main.bicep: effectiveMaximumInstanceCount = min(maximumInstanceCount, profile.instanceCap)
    maximumInstanceCount: Math.min(maximumInstanceCount, number(fields.instanceCap, `${name}.instanceCap`)),
    poolMax: number(fields.poolMax, `${name}.poolMax`),
    pgbouncer: fields.pgbouncer === true,
  }));
  const serviceBus = readFileSync(path.join(infraDir, 'modules', 'servicebus.bicep'), 'utf8');
  const postgres = readFileSync(path.join(infraDir, 'modules', 'postgres.bicep'), 'utf8');
  const host = JSON.parse(readFileSync(path.join(root, 'host.json'), 'utf8')) as {
    extensions?: { serviceBus?: { maxConcurrentCalls?: number; maxMessageBatchSize?: number } };
  };
  return {
    profiles,
    instanceMemoryMb,
    serviceBusTier: match(serviceBus, /sku:\s*\{\s*name:\s*'(\w+)'/, 'the Service Bus sku in infra/modules/servicebus.bicep'),
    storageGb: Number(match(postgres, /storageSizeGB:\s*(\d+)/, 'storageSizeGB in infra/modules/postgres.bicep')),
    host: {
      maxConcurrentCalls: number(host.extensions?.serviceBus?.maxConcurrentCalls, 'host.json maxConcurrentCalls'),
      maxMessageBatchSize: number(host.extensions?.serviceBus?.maxMessageBatchSize, 'host.json maxMessageBatchSize'),
    },
  };
}
