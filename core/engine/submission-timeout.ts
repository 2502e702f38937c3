import { TimeoutSeconds, timeoutOverrideProblem, type AnyJobDefinition } from '../../models';
import { parseOrThrow, ValidationError } from '../errors';

/**
 * The job's effective timeout: a per-submission override (HTTP header CoreMachine-Timeout-Seconds,
 * the submission message's `timeoutSeconds`, the CLI's --timeout-seconds) within its bounds, else
 * the job type's own, else none. Checked before anything is stored, like the parameters.
 */
export function submissionTimeout(definition: AnyJobDefinition, override: unknown): number | undefined {
  if (override === undefined || override === null) return definition.timeoutSeconds;
  const timeoutSeconds = parseOrThrow(TimeoutSeconds, override, 'timeoutSeconds', ['timeoutSeconds']);
  const problem = timeoutOverrideProblem(definition.timeoutSeconds, timeoutSeconds);
  if (problem) throw new ValidationError(problem, [{ code: 'too_big', path: ['timeoutSeconds'], maximum: definition.timeoutSeconds, message: problem }]);
  return timeoutSeconds;
}
