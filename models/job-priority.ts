import { z } from 'zod';
import { printableText } from './job-labels';

/**
 * Priorities and fair share (core/engine/fair-share.ts): a job may carry a priority class and a
 * fairness key (a tenant, a customer) with a weight. Claims serve the best class with ready tasks
 * first and, within it, share capacity between keys by weight. A job that carries neither is not in
 * the scheme: its tasks run in the order their messages arrive, as before.
 */

/** Best first: a claim serves `high` before `normal` before `low`. */
export const PRIORITIES = ['high', 'normal', 'low'] as const;
export const Priority = z.enum(PRIORITIES);
export type Priority = z.infer<typeof Priority>;

export const MAX_FAIRNESS_KEY_LENGTH = 200;
export const MAX_FAIRNESS_WEIGHT = 100;

export const PRIORITY_HEADER = 'CoreMachine-Priority';
/** Percent-decoded, like the name and labels headers. */
export const FAIRNESS_KEY_HEADER = 'CoreMachine-Fairness-Key';
export const FAIRNESS_WEIGHT_HEADER = 'CoreMachine-Fairness-Weight';

export const FairnessKey = printableText('a fairness key', MAX_FAIRNESS_KEY_LENGTH, 1);
/** A key with weight 3 gets three times the running tasks of a key with weight 1 when both have work. */
export const FairnessWeight = z
  .number()
  .int('a fairness weight is a whole number')
  .min(1, 'a fairness weight is at least 1')
  .max(MAX_FAIRNESS_WEIGHT, `a fairness weight is at most ${MAX_FAIRNESS_WEIGHT}`);

/** A submission's scheduling options (code, message, and the HTTP headers once decoded); null means absent. */
export const JobScheduling = z
  .strictObject({
    priority: Priority.nullish(),
    fairnessKey: FairnessKey.nullish(),
    fairnessWeight: FairnessWeight.nullish(),
  })
  .refine((options) => options.fairnessWeight == null || options.fairnessKey != null, {
    message: 'a fairness weight needs a fairness key: it weighs the key against the others',
    path: ['fairnessWeight'],
  });
export type JobScheduling = z.infer<typeof JobScheduling>;

/** The columns a job in the scheme stores (023_fair_share.sql); undefined when the job is not in it. */
export function fairShareColumns(options: JobScheduling): { rank: number; key: string; weight: number } | undefined {
  if (options.priority == null && options.fairnessKey == null) return undefined;
  // A job with a priority and no key shares the empty key with the other keyless ones.
  return { rank: PRIORITIES.indexOf(options.priority ?? 'normal'), key: options.fairnessKey ?? '', weight: options.fairnessWeight ?? 1 };
}

/** The header values, keyed by header name so an issue names the header. */
export const JobSchedulingHeaders = z
  .object({
    [PRIORITY_HEADER]: Priority.optional(),
    [FAIRNESS_KEY_HEADER]: z
      .string()
      .transform((text, ctx) => {
        try {
          return decodeURIComponent(text);
        } catch {
          ctx.issues.push({ code: 'custom', input: text, message: `${FAIRNESS_KEY_HEADER} is percent-encoded UTF-8: write % as %25` });
          return z.NEVER;
        }
      })
      .pipe(FairnessKey)
      .optional(),
    [FAIRNESS_WEIGHT_HEADER]: z
      .string()
      .regex(/^[0-9]{1,3}$/, `${FAIRNESS_WEIGHT_HEADER} is a whole number from 1 to ${MAX_FAIRNESS_WEIGHT}`)
      .transform(Number)
      .pipe(FairnessWeight)
      .optional(),
  })
  .transform((headers): JobScheduling => ({
    priority: headers[PRIORITY_HEADER],
    fairnessKey: headers[FAIRNESS_KEY_HEADER],
    fairnessWeight: headers[FAIRNESS_WEIGHT_HEADER],
  }));
