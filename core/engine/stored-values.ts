import type { Readable } from 'node:stream';
import type pg from 'pg';
import { JobNotFoundError, TaskNotFoundError } from '../errors';
import type { PayloadField } from '../payloads/payload-store';
import type { Payloads } from '../payloads/payloads';
import { findStoredValue } from '../state/payloads-store';

/** A value as the API serves it on its own route: inline JSON, or the stored blob's bytes as they stream. */
export type StoredValue = { kind: 'inline'; value: unknown } | { kind: 'stored'; size: number; sha256: string; stream: Readable };

/**
 * The values the job and task views link to instead of carrying (`resultRef`, `parametersRef`):
 * GET jobs/{jobId}/result and jobs/{jobId}/tasks/{taskId}/{result|parameters}. A stored one is
 * streamed, checked against its SHA-256 as it goes, so no process holds a large value whole to serve it.
 */
export class StoredValues {
  constructor(
    private readonly pool: pg.Pool,
    private readonly payloads: Payloads,
  ) {}

  async open(where: { jobId: string; taskId?: string | undefined; field: PayloadField }): Promise<StoredValue> {
    const row = await findStoredValue(this.pool, where);
    if (!row) throw where.taskId === undefined ? new JobNotFoundError(where.jobId) : new TaskNotFoundError(where.taskId);
    if (!row.ref) return { kind: 'inline', value: row.value ?? null };
    const what = where.taskId === undefined ? `result of job ${where.jobId}` : `${where.field} of task ${where.taskId}`;
    return { kind: 'stored', size: row.ref.size, sha256: row.ref.sha256, stream: await this.payloads.open(row.ref, what) };
  }
}
