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

/** ?a=1&b=2 from the defined, non-empty values; '' when there are none. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
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
