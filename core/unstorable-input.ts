import { describeInputIssues, findUnsafeJson } from '../models/http-input';
import { ValidationError } from './errors';

/**
 * Refuses, as a ValidationError with the issues, input PostgreSQL cannot store (a NUL or a lone
 * surrogate in a string or key, nesting past 64 levels), whoever supplies it: HTTP checks bodies
 * at the edge, but parameters also come by message, from schedules and from code.
 */
export function refuseUnstorable(what: string, value: unknown): void {
  const issues = findUnsafeJson(value);
  if (issues.length > 0) throw new ValidationError(`invalid ${what}: ${describeInputIssues(issues)}`, issues);
}
