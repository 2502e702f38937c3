import type { HttpRequest } from '@azure/functions';
import type { z } from 'zod';
import { parseOrThrow, ValidationError } from '../core/errors';
import { unstorableTextReason } from '../models/storable';

/**
 * A request's path is parsed here, before any handler touches the database; its query is picked
 * here and parsed once, by the engine method it is for (the boundary for code and HTTP alike).
 * Failures are ValidationErrors (400) carrying the zod issues.
 */

/** The query keys `schema` reads, and only when present: absent (or empty, as forms send it) means "default". */
export function queryFor(request: HttpRequest, schema: z.ZodObject): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = request.query.get(key);
    if (value !== null && value !== '') picked[key] = value;
  }
  return picked;
}

export function parseParams<T extends z.ZodObject>(request: HttpRequest, schema: T): z.output<T> {
  const params: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) params[key] = request.params[key] ?? '';
  return parseOrThrow(schema, params, 'path');
}

/**
 * NUL and lone surrogates anywhere in the path parameters or the query string (names included,
 * read or not) are refused with one clear message, whatever the route: no column can hold them.
 */
export function assertSafeRequestText(request: HttpRequest): void {
  const issues: Array<{ code: 'custom'; path: string[]; message: string }> = [];
  const check = (where: 'path' | 'query', name: string, value: string) => {
    const reason = unstorableTextReason(name) ?? unstorableTextReason(value);
    if (reason) issues.push({ code: 'custom', path: [where, name], message: `${where === 'path' ? 'path segment' : 'query parameter'} "${name}" ${reason}` });
  };
  for (const [name, value] of Object.entries(request.params)) check('path', name, value);
  for (const [name, value] of request.query.entries()) check('query', name, value);
  if (issues.length > 0) throw new ValidationError(issues.map((issue) => issue.message).join('; '), issues);
}
