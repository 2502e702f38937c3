import { z } from 'zod';

/** How an error is stored on a job or task and returned by the API. `cause` nests the chain. */
export interface ErrorShape {
  type: string;
  message: string;
  stage?: number | undefined;
  taskId?: string | undefined;
  cause?: ErrorShape | undefined;
  issues?: unknown[] | undefined;
  /** For COMPLETED_WITH_ERRORS: the tasks that failed within the stages' tolerance. */
  failures?: Array<{ taskId: string; stage: number; type: string; message: string }> | undefined;
  /** For a Timeout: whose deadline passed, when it was (ISO time), and how long that clock had run. */
  scope?: 'job' | 'stage' | undefined;
  deadline?: string | undefined;
  elapsedMs?: number | undefined;
  /** For LeaseExpired and LeaseLost: how many leases the task has lost to hosts that died or stopped renewing. */
  leaseLosses?: number | undefined;
}

export const ErrorShape: z.ZodType<ErrorShape> = z.lazy(() =>
  z.object({
    type: z.string(),
    message: z.string(),
    stage: z.number().int().optional(),
    taskId: z.string().optional(),
    cause: ErrorShape.optional(),
    issues: z.array(z.unknown()).optional(),
    failures: z.array(z.object({ taskId: z.string(), stage: z.number().int(), type: z.string(), message: z.string() })).optional(),
    scope: z.enum(['job', 'stage']).optional(),
    deadline: z.string().optional(),
    elapsedMs: z.number().int().optional(),
    leaseLosses: z.number().int().optional(),
  }),
);
