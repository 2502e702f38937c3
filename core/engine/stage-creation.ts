import { createHash, type Hash } from 'node:crypto';
import type pg from 'pg';
import { isSignalStage, limitKeyOf, maxToleratedFailures, type AnyTaskStageDefinition, type StageResults } from '../../models';
import { isTransientDatabaseError } from '../db/transient-errors';
import { errorToShape, FanOutError, findCause } from '../errors';
import { computeTaskId } from '../identity';
import type { JobRow, StageRow } from '../state/rows';
import { findStage, recordStageChunk } from '../state/stages-store';
import { insertStageTasks } from '../state/tasks-store';
import { jsonToStore } from '../../models/storable';
import { PayloadStoreUnavailableError } from '../payloads/payload-errors';
import type { PayloadRef } from '../payloads/payload-store';
import { INLINE_PAYLOADS, type Payloads } from '../payloads/payloads';
import type { OutboxIntent } from './outbox';
import { failJob } from './stage-advance';
import type { JobMessageOutcome } from './stage-start';
import { NO_RESULTS, stageResultsOf } from './stage-results';
import type { UnitOfWork } from './unit-of-work';
import { afterCommit, type AfterCommit } from './after-commit';
import { commit } from './commit';
import type { Registry } from '../registry';
import type { Logger } from '../logger';

/**
 * Chunk sizes grow with the tasks already created: the first chunk is small so the stage's first
 * tasks are claimable within milliseconds, later ones are large so a big stage costs few commits.
 */
const FIRST_CHUNK = 100;
const MAX_CHUNK = 5000;
const chunkSize = (from: number) => Math.min(MAX_CHUNK, Math.max(FIRST_CHUNK, from));

/** Another delivery recorded this chunk first, or the job stopped: this one creates no more. */
class ChunkSuperseded extends Error {
  override readonly name = 'ChunkSuperseded';
}

/**
 * Creates a stage's tasks chunk by chunk, each chunk committed (with its dispatch intent) in its
 * own unit of work, so the first tasks run while the rest are still being inserted. Resumable:
 * the fan-out is run again and the tasks already created (`stage.created`) are skipped, after
 * checking that it yields them again exactly (the fan-out must be deterministic: same parameters
 * and previous results, same task specs in the same order). The stage cannot complete early: until
 * the last chunk commits its total holds one place open (migration 008), and that last chunk sets
 * the real total and failure tolerance and makes the advance the completions could not.
 */
export async function createStageTasks(
  uow: UnitOfWork,
  pool: pg.Pool,
  definition: AnyTaskStageDefinition,
  job: JobRow,
  stage: StageRow,
  resend?: string,
): Promise<JobMessageOutcome> {
  const base = { jobId: job.job_id, stage: job.stage };
  const remote = definition.task.execution === 'remote';
  const taskType = definition.task.type;
  const hash = createHash('sha256');
  const payloads = uow.context.payloads ?? INLINE_PAYLOADS;
  let specs: SpecReader;
  try {
    const previous = job.stage === 1 ? NO_RESULTS : await previousResults(pool, job.job_id, job.stage - 1, payloads);
    // A limited task type's slot key is computed here, once per task: a key function that throws fails the fan-out.
    specs = new SpecReader(
      await definition.fanOut({ jobId: job.job_id, stage: job.stage, parameters: job.parameters, previous }),
      hash,
      (spec) => limitKeyOf(definition.task, spec),
      { payloads, jobId: job.job_id, stage: job.stage },
    );
    const skipped = await specs.skip(stage.created);
    if (skipped < stage.created || (stage.created > 0 && hash.copy().digest('hex') !== stage.fan_out_digest)) {
      throw new Error(
        `it no longer yields the ${stage.created} task spec(s) already created: a fan-out must be deterministic (same parameters and previous results → same tasks in the same order)`,
      );
    }
  } catch (error) {
    return failFanOut(uow, definition, job, error);
  }

  // A resumed job message (operator resume, janitor) re-sends what was created before it.
  let intents: OutboxIntent[] =
    resend && stage.created > 0 && !remote
      ? [{ kind: 'stage_tasks', jobId: job.job_id, stage: job.stage, taskType, resend, chunk: { from: 0, through: stage.created - 1 } }]
      : [];
  let from = stage.created;
  for (;;) {
    let chunk: Chunk;
    try {
      chunk = await specs.take(chunkSize(from));
    } catch (error) {
      return failFanOut(uow, definition, job, error);
    }
    const first = from;
    const digest = hash.copy().digest('hex');
    const pending = intents;
    let row: StageRow;
    try {
      row = await commit(uow, async ({ client, context }) => {
        const taskIds = chunk.specs.map((_, i) => computeTaskId(job.job_id, job.stage, first + i));
        await insertStageTasks(client, {
          jobId: job.job_id,
          stage: job.stage,
          taskType,
          remote,
          firstIndex: first,
          parameters: chunk.specs,
          ...(chunk.refs ? { parameterRefs: chunk.refs } : {}),
          taskIds,
          limitKeys: chunk.limitKeys,
        });
        const last = chunk.last ? { maxFailures: maxToleratedFailures(definition.failurePolicy, first + chunk.specs.length) } : undefined;
        const recorded = await recordStageChunk(client, {
          jobId: job.job_id,
          stage: job.stage,
          fromIndex: first,
          count: chunk.specs.length,
          digest,
          ...(last ? { last } : {}),
        });
        if (!recorded) throw new ChunkSuperseded(`stage ${job.stage} of job ${job.job_id} is no longer at ${first} created tasks`);
        const out = [...pending];
        if (chunk.specs.length > 0 && !remote) {
          const range = { from: first, through: first + chunk.specs.length - 1 };
          out.push({ kind: 'stage_tasks', jobId: job.job_id, stage: job.stage, taskType, ...(resend ? { resend } : {}), chunk: range });
        }
        return { value: recorded, ...afterCommit({ intents: out }, last ? finishCreation(context.logger, job, recorded, definition.name) : undefined) };
      });
    } catch (error) {
      if (error instanceof ChunkSuperseded || uniqueViolation(error)) {
        return {
          ...base,
          kind: 'duplicate',
          reason: `task creation of stage ${job.stage} moved on without this delivery (another delivery, or the job stopped)`,
        };
      }
      throw error;
    }
    intents = [];
    from += chunk.specs.length;
    if (!row.creating) return { ...base, kind: 'started', tasks: row.total };
  }
}

/**
 * The last chunk: the stage's total and tolerance are known. Results that committed first are
 * judged by a probe after this commit (a result commit that ran alongside this one saw the old
 * total, and this one may not see that commit's counts): it fails or advances the job if they
 * call for it.
 */
function finishCreation(logger: Logger, job: JobRow, stage: StageRow, stageName: string): AfterCommit {
  logger.info('stage started', { jobId: job.job_id, stage: job.stage, stageName, tasks: stage.total });
  return afterCommit({
    transitions: [{ name: 'StageStarted', attributes: { jobId: job.job_id, jobType: job.job_type, stage: job.stage, stageName, tasks: stage.total } }],
    stageChecks: [{ jobId: job.job_id, stage: job.stage, probe: true }],
  });
}

export function stageDefinitionOf(registry: Registry, job: JobRow): AnyTaskStageDefinition {
  const definition = registry.job(job.job_type, job.job_version).stages[job.stage - 1];
  if (!definition) throw new Error(`job type "${job.job_type}" has no stage ${job.stage}`);
  // claimStage starts a waiting stage itself (signal-stage.ts): it never has tasks to create.
  if (isSignalStage(definition)) throw new Error(`stage ${job.stage} of job type "${job.job_type}" waits for a signal and has no tasks`);
  return definition;
}

/** A fan-out that throws (or stops reproducing its tasks) fails the job; a database or payload store fault does not. */
async function failFanOut(uow: UnitOfWork, definition: AnyTaskStageDefinition, job: JobRow, error: unknown): Promise<JobMessageOutcome> {
  if (isTransientDatabaseError(error)) throw error;
  const unavailable = findCause(error, (candidate): candidate is PayloadStoreUnavailableError => candidate instanceof PayloadStoreUnavailableError);
  if (unavailable) throw unavailable;
  const failure = new FanOutError(`fan-out of stage ${job.stage} ("${definition.name}") failed: ${errorToShape(error).message}`, { cause: error });
  await commit(uow, async ({ client, context }) => {
    const failed = await failJob(client, context, job.job_id, job.stage, errorToShape(failure, { stage: job.stage }));
    return { value: failed.failed, ...failed.after };
  });
  return { kind: 'failed', jobId: job.job_id, stage: job.stage, error: failure.message };
}

async function previousResults(pool: pg.Pool, jobId: string, stage: number, payloads: Payloads): Promise<StageResults<unknown>> {
  const row = await findStage(pool, jobId, stage);
  if (!row) throw new Error(`stage ${stage} of job ${jobId} has no record but stage ${stage + 1} is starting`);
  return stageResultsOf(pool, row, payloads);
}

/** One chunk of specs: JSON inline, or null where `refs` has the spec's blob in the payload store (refs omitted when none is). */
interface Chunk {
  specs: Array<string | null>;
  refs?: Array<PayloadRef | null>;
  limitKeys: Array<string | null>;
  last: boolean;
}

/** Spec blobs written at once while a chunk is read (each is held in memory until written). */
const SPEC_WRITES = 8;

/** The fan-out's specs as JSON, a chunk at a time, hashed in order; one spec read ahead to know the end. */
class SpecReader {
  private readonly iterator: Iterator<unknown> | AsyncIterator<unknown>;
  private ahead: IteratorResult<unknown> | undefined;
  private index = 0;

  constructor(
    specs: Iterable<unknown> | AsyncIterable<unknown>,
    private readonly hash: Hash,
    private readonly limitKeyOf: (spec: unknown) => string | null = () => null,
    private readonly store: { payloads: Payloads; jobId: string; stage: number } = { payloads: INLINE_PAYLOADS, jobId: '', stage: 0 },
  ) {
    this.iterator = Symbol.asyncIterator in specs ? specs[Symbol.asyncIterator]() : specs[Symbol.iterator]();
  }

  /**
   * Up to `count` specs. One too large for a row is written to the payload store as it is read
   * (SPEC_WRITES at a time, before the chunk's commit: a crash in between leaves an orphan the
   * janitor sweeps), so a chunk of large specs never sits in memory whole.
   */
  async take(count: number): Promise<Chunk> {
    const specs: Array<string | null> = [];
    const limitKeys: Array<string | null> = [];
    let refs: Array<PayloadRef | null> | undefined;
    const writes = new Set<Promise<void>>();
    let failed: Error | undefined;
    const { payloads, jobId, stage } = this.store;
    const last = await this.read(count, (json, spec, index) => {
      const at = specs.length;
      limitKeys.push(this.limitKeyOf(spec));
      if (payloads.fitsInline(json)) {
        specs.push(json);
        refs?.push(null);
        return undefined;
      }
      refs ??= specs.map(() => null);
      specs.push(null);
      refs.push(null);
      const placing = refs;
      const write = payloads
        .place(json, { jobId, owner: computeTaskId(jobId, stage, index), field: 'parameters' }, `task spec ${index}`)
        .then((placed) => {
          if (placed.ref) placing[at] = placed.ref;
          else specs[at] = placed.json;
        })
        .catch((error: unknown) => void (failed ??= error instanceof Error ? error : new Error(String(error))))
        .finally(() => writes.delete(write));
      writes.add(write);
      return writes.size >= SPEC_WRITES ? Promise.race(writes) : undefined;
    });
    await Promise.all(writes);
    if (failed !== undefined) throw failed;
    return { specs, limitKeys, last, ...(refs ? { refs } : {}) };
  }

  /** Reads past `count` specs (hashing them, keeping none); returns how many there were. */
  async skip(count: number): Promise<number> {
    let skipped = 0;
    await this.read(count, () => skipped++);
    return skipped;
  }

  /** Reads up to `count` specs into `keep` (awaited when it returns a promise); true when the fan-out has no more after them. */
  private async read(count: number, keep: (json: string, spec: unknown, index: number) => unknown): Promise<boolean> {
    for (let kept = 0; ; kept++) {
      const next = this.ahead ?? (await this.iterator.next());
      this.ahead = undefined;
      if (next.done) return true;
      if (kept === count) {
        this.ahead = next;
        return false;
      }
      const { json, problem } = jsonToStore(next.value);
      if (json === undefined) throw new TypeError(`task spec ${this.index} ${problem}`);
      this.hash.update(json).update('\n');
      const writing = keep(json, next.value, this.index);
      this.index++;
      if (writing instanceof Promise) await writing;
    }
  }
}

function uniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}
