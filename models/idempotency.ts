import { z } from 'zod';

/**
 * The caller's `Idempotency-Key`: part of the job id, so the same parameters can run again under a
 * new key and a retried request with the same key finds the same job. Printable ASCII only (what an
 * HTTP header carries without encoding, and never a NUL), bounded like the column.
 */
export const IdempotencyKey = z
  .string()
  .min(1, 'Idempotency-Key must not be empty')
  .max(200, 'Idempotency-Key is at most 200 characters')
  .regex(/^[\x20-\x7e]+$/, 'Idempotency-Key must be printable ASCII (no control characters)');
export type IdempotencyKey = z.infer<typeof IdempotencyKey>;

/** `GET jobs/{jobId}?waitSeconds=N`: long-poll until the job ends or N seconds pass. */
export const MAX_WAIT_SECONDS = 60;
export const JobWaitQuery = z.object({
  // Digits only: "", " 3", "0x10" and "1e1" are mistakes to report, not numbers to guess at.
  // A number from code (already validated at the HTTP edge) passes as is.
  waitSeconds: z
    .union([
      z
        .string()
        .regex(/^\d{1,3}$/, 'waitSeconds must be a whole number of seconds')
        .transform(Number),
      z.number(),
    ])
    .pipe(z.number().int().min(0).max(MAX_WAIT_SECONDS, `waitSeconds is at most ${MAX_WAIT_SECONDS}`))
    .optional(),
});
export type JobWaitQuery = z.infer<typeof JobWaitQuery>;
