import { z } from 'zod';

/**
 * How the API shows a value kept in the payload store instead of inline (docs/payloads.md): its
 * size in bytes, the SHA-256 of its bytes, and the route that streams it. The field it stands for
 * (`result`, `parameters`) is null then. A separate field, never a key inside the value: a value
 * that looks like a link is just a value.
 */
export const PayloadLink = z.object({
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  url: z.string(),
});
export type PayloadLink = z.infer<typeof PayloadLink>;

/** The route of a stored value: a task's result or parameters, or the job's result. */
export function payloadUrl(where: { jobId: string; taskId?: string; field: 'result' | 'parameters' }): string {
  const job = `/api/jobs/${encodeURIComponent(where.jobId)}`;
  return where.taskId === undefined ? `${job}/${where.field}` : `${job}/tasks/${encodeURIComponent(where.taskId)}/${where.field}`;
}

export function payloadLink(ref: { size: number; sha256: string }, where: { jobId: string; taskId?: string; field: 'result' | 'parameters' }): PayloadLink {
  return { size: ref.size, sha256: ref.sha256, url: payloadUrl(where) };
}
