import type pg from 'pg';
import { CoreMachine } from '../../core/engine/core-machine';
import { createLogger, type Logger } from '../../core/logger';
import { Registry } from '../../core/registry';
import { InProcessTransport } from '../../core/transport/in-process-transport';
import type { QueueOptions } from '../../core/transport/in-process-queue';
import type { Transport } from '../../core/transport/transport';
import { InProcessWorker, type WorkerOptions } from '../../core/worker';
import { exampleJobs } from '../../jobs';
import { makeTestJobs, SideEffects, type TaskHook } from './test-jobs';

export interface Harness {
  machine: CoreMachine;
  transport: InProcessTransport;
  worker: InProcessWorker | undefined;
  registry: Registry;
  effects: SideEffects;
  logs: string[];
  stop(): Promise<void>;
}

/** Logs are captured, not printed, so tests can assert on what operators would see. */
export function captureLogger(lines: string[]): Logger {
  return createLogger('debug', {}, (line) => lines.push(line));
}

export async function startHarness(
  pool: pg.Pool,
  options: {
    queue?: Partial<QueueOptions>;
    worker?: Partial<WorkerOptions> | false;
    beforeTask?: TaskHook;
    wrapTransport?: (transport: InProcessTransport) => Transport;
  } = {},
): Promise<Harness> {
  const effects = new SideEffects();
  const registry = new Registry().register(...exampleJobs, ...makeTestJobs(effects, { beforeTask: options.beforeTask }).jobs);
  const transport = new InProcessTransport(options.queue);
  const logs: string[] = [];
  const logger = captureLogger(logs);
  const machine = await CoreMachine.create({ pool, registry, transport: options.wrapTransport?.(transport) ?? transport, logger });
  const worker =
    options.worker === false
      ? undefined
      : new InProcessWorker(machine, transport, logger, { taskBatchSize: 16, taskConcurrency: 4, jobConcurrency: 2, ...options.worker });
  return {
    machine,
    transport,
    worker,
    registry,
    effects,
    logs,
    stop: async () => {
      await worker?.stop();
      await transport.close();
    },
  };
}

/** Waits until the job leaves QUEUED/PROCESSING (or the timeout passes) and returns it. */
export async function waitForJob(machine: CoreMachine, jobId: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await machine.getJob(jobId);
    if (!['QUEUED', 'PROCESSING'].includes(job.status) || Date.now() > deadline) return job;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The invariant every test file checks after each test: nothing left QUEUED or PROCESSING. */
export async function stuckJobs(pool: pg.Pool): Promise<Array<{ job_id: string; status: string; stage: number }>> {
  const result = await pool.query<{ job_id: string; status: string; stage: number }>(
    "SELECT job_id, status, stage FROM coremachine.jobs WHERE status IN ('QUEUED','PROCESSING')",
  );
  return result.rows;
}
