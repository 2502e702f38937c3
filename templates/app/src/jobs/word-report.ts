import { z } from 'zod';
import { defineJob, defineTask } from 'coremachine';

/**
 * An example job to replace with your own: it waits (a day at most) for someone to approve the
 * texts — the `approval` signal — then counts the words of each text in parallel, one task per
 * text, and reports the total.
 */
export const countWords = defineTask({
  type: 'word_report.count',
  parameters: z.object({ index: z.number().int().min(0), text: z.string(), approvedBy: z.string() }),
  // A failed count runs again, up to 3 attempts in all: after 1 s, then after 2 s.
  retry: { maxAttempts: 3, initialDelayMs: 1000 },
  handler: ({ index, text, approvedBy }) => Promise.resolve({ index, approvedBy, words: text.split(/\s+/).filter(Boolean).length }),
});

/** What the approver sends: POST /api/jobs/{jobId}/signals/approval with `{"approvedBy": "ana"}`. */
export const Approval = z.strictObject({ approvedBy: z.string().min(1).max(200) });

export const wordReport = defineJob({
  type: 'word_report',
  description: 'waits for an approval, then counts the words of each text in parallel',
  parameters: z.object({ texts: z.array(z.string().max(100_000)).min(1).max(1000) }),
})
  // Nothing runs while the job waits; a day without the signal fails it with a DeadlineExceededError.
  .waitFor({ name: 'approval', payload: Approval, timeoutSeconds: 24 * 3600 })
  .stage({
    name: 'count',
    task: countWords,
    // previous: the one approval the signal delivered.
    fanOut: async ({ parameters, previous }) => {
      const [approval] = await previous.all();
      return parameters.texts.map((text, index) => ({ index, text, approvedBy: approval?.approvedBy ?? '' }));
    },
  })
  .finalize(async ({ previous }) => {
    let words = 0;
    let approvedBy = '';
    for await (const count of previous) {
      words += count.words;
      approvedBy = count.approvedBy;
    }
    return { texts: previous.count, words, approvedBy };
  });
