import { z } from 'zod';
import { defineJob, defineTask } from 'coremachine';

/**
 * An approval gate: stage 1 renders the pages in parallel, stage 2 waits for a person (or another
 * system) to send the `approval` signal, stage 3 publishes the pages only if it approved. Nothing
 * runs and nothing polls while the job waits; the signal's payload is stage 3's `previous`.
 */
export const renderPage = defineTask({
  type: 'approved_publish.render',
  parameters: z.object({ title: z.string().min(1), page: z.number().int().min(1) }),
  handler: ({ title, page }) => Promise.resolve({ page, heading: `${title}, page ${page}` }),
});

export const publishPage = defineTask({
  type: 'approved_publish.publish',
  parameters: z.object({ page: z.number().int().min(1), approvedBy: z.string().min(1) }),
  handler: ({ page, approvedBy }) => Promise.resolve({ page, url: `/published/page-${page}`, approvedBy }),
});

/** What the approver sends: POST /api/jobs/{jobId}/signals/approval, body `{"approvedBy":"ana","approved":true}`. */
export const Approval = z.strictObject({
  approvedBy: z.string().min(1).max(200),
  approved: z.boolean(),
  comment: z.string().max(2000).optional(),
});

export const approvedPublish = defineJob({
  type: 'approved_publish',
  description: 'renders n pages, waits for the "approval" signal, then publishes them if approved',
  parameters: z.object({ title: z.string().min(1).max(200), pages: z.number().int().min(1).max(1000) }),
})
  .stage({
    name: 'render',
    task: renderPage,
    fanOut: ({ parameters }) => Array.from({ length: parameters.pages }, (_, i) => ({ title: parameters.title, page: i + 1 })),
  })
  // A week to decide; past it the job fails with a Timeout (the deadline of the stage).
  .waitFor({ name: 'approval', payload: Approval, timeoutSeconds: 7 * 24 * 3600 })
  .stage({
    name: 'publish',
    task: publishPage,
    // previous: exactly one element, the validated approval. Rejected: nothing to publish.
    async *fanOut({ parameters, previous }) {
      for await (const approval of previous) {
        if (!approval.approved) return;
        for (let page = 1; page <= parameters.pages; page++) yield { page, approvedBy: approval.approvedBy };
      }
    },
  })
  .finalize(async ({ parameters, previous }) => {
    const published = await previous.all();
    return {
      title: parameters.title,
      published: published.length,
      approvedBy: published[0]?.approvedBy ?? null,
      outcome: published.length > 0 ? 'published' : 'rejected',
    };
  });
