import { createHash } from 'node:crypto';

/** JSON with object keys sorted at every depth, so equal parameters hash equally. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const encoded = JSON.stringify(value);
    // undefined, functions and symbols have no JSON form; inside objects they are dropped below.
    return encoded ?? 'null';
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return canonicalJson((value as { toJSON: () => unknown }).toJSON());
  }
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined && typeof item !== 'function' && typeof item !== 'symbol')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
}

/**
 * SHA-256 of type + canonical parameters (+ the caller's idempotency key): resubmitting the same
 * job yields the same id, another key a new one. Without a key the hash is exactly what it always
 * was, so ids of jobs submitted before keys existed do not change. A key cannot contain NUL
 * (validated), so the separator keeps "type + params + key" unambiguous.
 */
export function computeJobId(jobType: string, validatedParameters: unknown, idempotencyKey?: string): string {
  const hash = createHash('sha256').update(jobType).update('\u0000').update(canonicalJson(validatedParameters));
  if (idempotencyKey !== undefined) hash.update('\u0000').update(idempotencyKey);
  return hash.digest('hex');
}

/** Full-length and collision-free by construction: the job id plus stage and index. */
export function computeTaskId(jobId: string, stage: number, index: number): string {
  return `${jobId}-s${stage}-t${index}`;
}
