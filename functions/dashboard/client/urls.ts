/**
 * Where the page sends its requests. DOM-free, so jest tests it directly.
 *
 * The API base is a fixed path on the page's own origin, never derived from location.pathname:
 * a page opened as `//evil.example/api/dashboard` once turned that path into a protocol-relative
 * base and sent the function key to another host.
 */
export const API_BASE = '/api';

export function apiUrl(pageOrigin: string, path: string): string {
  if (!path.startsWith('/')) throw new Error(`API path must start with /: ${path}`);
  const url = new URL(API_BASE + path, pageOrigin);
  if (url.origin !== new URL(pageOrigin).origin) throw new Error(`refusing to call the API off this page's origin: ${url.href}`);
  return url.href;
}

/** ?a=1&b=2 from the defined, non-empty values (a list once per item: ?label=x&label=y); '' when there are none. */
export function query(params: Record<string, string | number | readonly string[] | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (Array.isArray(value)) for (const item of value as readonly string[]) search.append(name, item);
    else if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** Every value of a repeated argument of the list route (#/?label=a:1&label=b:2), which Route's args keep once. */
export function routeValues(hash: string, name: string): string[] {
  const text = hash.replace(/^#/, '');
  const cut = text.indexOf('?');
  return cut < 0 ? [] : new URLSearchParams(text.slice(cut + 1)).getAll(name).filter((value) => value !== '');
}

/**
 * A typed label filter as the API's `key:value`: the operator may write `key=value` (as the list
 * shows labels) or `key:value`. A key holds neither character, so the first of them splits.
 */
export function labelFilter(typed: string): string {
  const cut = typed.search(/[=:]/);
  return cut < 0 ? typed : `${typed.slice(0, cut)}:${typed.slice(cut + 1)}`;
}

export type Route = { view: 'list'; args: Record<string, string> } | { view: 'job'; jobId: string };

/**
 * Hash routing (#/ lists jobs, #/?status=&type= filters them, #/jobs/ID shows one) keeps the
 * dashboard one URL, so the function key in ?code= survives every navigation.
 */
export function parseRoute(hash: string): Route {
  const text = hash.replace(/^#/, '') || '/';
  const cut = text.indexOf('?');
  const path = cut < 0 ? text : text.slice(0, cut);
  const args = Object.fromEntries(new URLSearchParams(cut < 0 ? '' : text.slice(cut + 1)));
  const match = /^\/jobs\/([^/?]+)$/.exec(path);
  if (match?.[1]) {
    try {
      return { view: 'job', jobId: decodeURIComponent(match[1]) };
    } catch {
      // A malformed escape is not a job id: show the list.
    }
  }
  return { view: 'list', args };
}
