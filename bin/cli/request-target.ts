import { HttpRefusal } from './http-refusal';

export interface RequestTarget {
  /** The raw path, still percent-encoded, e.g. `/api/jobs/abc`. */
  pathname: string;
  /** The raw query string without its `?` (may be empty). */
  search: string;
}

/**
 * Splits req.url by hand. `new URL(req.url, base)` reads a target that starts with `//` as an
 * authority: `//evil.example/api/dashboard` would become the path `/api/dashboard` of host
 * evil.example. Only the origin form (`/path?query`) is served; every path segment must be
 * valid percent-encoding, so the routes never see a URIError.
 */
export function parseRequestTarget(url: string | undefined): RequestTarget {
  const target = url ?? '/';
  if (!target.startsWith('/')) throw new HttpRefusal(400, 'BadRequestError', 'the request target must be a path starting with "/"');
  const query = target.indexOf('?');
  const pathname = query >= 0 ? target.slice(0, query) : target;
  const search = query >= 0 ? target.slice(query + 1) : '';
  for (const segment of pathname.split('/')) {
    try {
      decodeURIComponent(segment);
    } catch {
      throw new HttpRefusal(400, 'BadRequestError', `the path segment ${JSON.stringify(segment.slice(0, 100))} is not valid percent-encoding`);
    }
  }
  return { pathname, search };
}
