import type { AnyJobDefinition } from '../../models';
import { createPool } from '../../core/db/pool';
import { CoreMachine } from '../../core/engine/core-machine';
import { Registry } from '../../core/registry';
import { InProcessTransport } from '../../core/transport/in-process-transport';
import { InProcessWorker } from '../../core/worker';
import { captureLogger } from './harness';

/** Engine instances sharing one database and one in-process transport, as the limits suites run them. */
export interface LimitsCluster {
  machines: CoreMachine[];
  workers: InProcessWorker[];
  transport: InProcessTransport;
  /** What every instance logged. */
  logs: string[];
  /** Stops the workers (after their batches in flight), closes the transport and ends the pools. */
  stop(): Promise<void>;
}

/**
 * Several engine instances, each with a pool of its own (ended by stop(), so its backends report
 * their statistics), with short deferral backoffs so a limit that binds is exercised quickly.
 */
export async function startLimitsCluster(databaseUrl: string, jobs: AnyJobDefinition[], instances: number, taskBatchSize = 8): Promise<LimitsCluster> {
  const registry = new Registry().register(...jobs);
  const transport = new InProcessTransport({ lockDurationMs: 30_000, maxDeliveryCount: 10 });
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const pools = Array.from({ length: instances }, () => createPool(databaseUrl, 4));
  const machines = await Promise.all(pools.map((pool) => CoreMachine.create({ pool, registry, transport, logger })));
  const workers = machines.map(
    (machine) =>
      new InProcessWorker(machine, transport, logger, {
        taskBatchSize,
        taskConcurrency: 4,
        jobConcurrency: 2,
        settlement: { deferBaseMs: 10, deferMaxMs: 100 },
      }),
  );
  return {
    machines,
    workers,
    transport,
    logs,
    stop: async () => {
      await Promise.all(workers.map((worker) => worker.drain()));
      await Promise.all(workers.map((worker) => worker.stop()));
      await transport.close();
      await Promise.all(pools.map((pool) => pool.end()));
    },
  };
}
