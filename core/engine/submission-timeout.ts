import { TimeoutSeconds, timeoutOverrideProblem, type AnyJobDefinition } from '../../models';
import { describeZodError, ValidationError } from '../errors';

/**
 * The job's effective timeout: a per-submission override (HTTP header CoreMachine-Timeout-Seconds,
 * the submission message's `timeoutSeconds`, the CLI's --timeout-seconds) within its bounds, else
 * the job type's own, else none. Checked before anything is stored, like the parameters.
 */
export function submissionTimeout(definition: AnyJobDefinition, override: unknown): number | undefined {
  if (override === undefined || override === null) return definition.timeoutSeconds;
  const parsed = TimeoutSeconds.safeParse(override);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({ ...issue, path: ['timeoutSeconds', ...issue.path] }));
    throw new ValidationError(`invalid timeoutSeconds: ${describeZodError(parsed.error)}`, issues);
  }
  const problem = timeoutOverrideProblem(definition.timeoutSeconds, parsed.data);
  if (problem) throw new ValidationError(problem, [{ code: 'too_big', path: ['timeoutSeconds'], maximum: definition.timeoutSeconds, message: problem }]);
  return parsed.data;
}
