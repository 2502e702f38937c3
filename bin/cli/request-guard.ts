import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { HttpRefusal } from './http-refusal';

/**
 * What `coremachine dev` checks before a request reaches a route. The server runs on a laptop
 * next to a browser: a page from any site can send it requests (CSRF) and a DNS name of the
 * attacker's can resolve to 127.0.0.1 (DNS rebinding), so the Host, the origin and the content
 * type are checked on every request, and the function key when one is configured.
 */
export interface GuardOptions {
  /** Bound to a loopback address: only loopback Host names with the bound port are accepted. */
  loopbackOnly: boolean;
  port: number;
}

const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(\d{1,5}))?$/;
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);
const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** A loopback bind address is reachable from this machine only; anything else is on purpose. */
export function isLoopbackAddress(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/** The Host header, checked for shape (always) and for loopback names and port (when bound to loopback). */
export function checkHost(header: string | undefined, options: GuardOptions): string {
  if (!header) throw new HttpRefusal(400, 'BadRequestError', 'a Host header is required');
  const match = HOST.exec(header);
  const port = match?.[2] === undefined ? 80 : Number(match[2]);
  if (!match || port > 65535) throw new HttpRefusal(400, 'BadRequestError', `invalid Host header ${JSON.stringify(header.slice(0, 100))}`);
  const name = (match[1] ?? '').toLowerCase();
  if (options.loopbackOnly && (!LOOPBACK_NAMES.has(name) || port !== options.port)) {
    throw new HttpRefusal(
      421,
      'MisdirectedRequestError',
      `Host "${header}" is not this server: "coremachine dev" on a loopback address answers only localhost, 127.0.0.1 or [::1] on port ${options.port} (bind with --host 0.0.0.0 to serve other names)`,
    );
  }
  return `${name}:${port}`;
}

/**
 * A browser says where a request comes from (Origin, Sec-Fetch-Site); a page of another site
 * must not change anything here. Clients that are not browsers (curl, the CLI) send neither.
 */
export function checkOrigin(req: http.IncomingMessage, method: string, host: string): void {
  if (!MUTATING.has(method)) return;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw new HttpRefusal(403, 'CrossSiteRequestError', `${method} from another site is refused (Sec-Fetch-Site: ${site})`);
  }
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let own = false;
  try {
    const parsed = new URL(origin);
    // URL keeps IPv6 brackets in hostname and lower-cases it, like checkHost's answer.
    own = parsed.protocol === 'http:' && `${parsed.hostname}:${parsed.port || '80'}` === host;
  } catch {
    own = false; // "null" and other opaque origins are never this server
  }
  if (!own)
    throw new HttpRefusal(
      403,
      'CrossSiteRequestError',
      `${method} from origin ${JSON.stringify(origin.slice(0, 200))} is refused: only pages served by this server may change jobs`,
    );
}

/** A body must say it is JSON: a form or text/plain body is what a cross-site page can send without asking. */
export function checkContentType(req: http.IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new HttpRefusal(
      415,
      'UnsupportedMediaTypeError',
      `a request body must be sent with content-type: application/json (got ${type ? JSON.stringify(type) : 'none'})`,
    );
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Compares digests of equal length in constant time, so the time taken says nothing about the key. */
export function checkFunctionKey(presented: string | undefined, expected: string): void {
  if (presented === undefined || presented === '') {
    throw new HttpRefusal(401, 'UnauthorizedError', 'this route needs the function key: send it as the x-functions-key header or ?code=');
  }
  if (!timingSafeEqual(digest(presented), digest(expected))) {
    throw new HttpRefusal(401, 'UnauthorizedError', 'the function key sent (x-functions-key or ?code=) is wrong');
  }
}
