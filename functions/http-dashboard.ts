import { randomBytes } from 'node:crypto';
import type { HttpRoute } from './http-route';
import { clientScript } from './dashboard/bundle';
import { renderDashboardPage } from './dashboard/page';
import { withErrors, type Handler } from './http-errors';

/**
 * GET dashboard: the operator page, one HTML document with its style and its bundled script
 * inline. Inline rather than a second route for the script: the page keeps a strict per-response
 * nonce CSP (only this response's own script and style run), the script needs no route of its own
 * (which would need the function key in its URL too, or be the one anonymous route besides
 * health), and the page loads in one round trip. The page talks to the /api routes of its own
 * origin with the key it was opened with (?code=).
 */
export const dashboardHandler: Handler = withErrors(async () => {
  const script = await clientScript();
  // A fresh nonce per response: even if escaping failed somewhere, injected markup could not
  // execute script or phone home.
  const nonce = randomBytes(16).toString('base64');
  return {
    status: 200,
    body: renderDashboardPage(nonce, script),
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': [
        "default-src 'none'",
        `script-src 'nonce-${nonce}'`,
        `style-src 'nonce-${nonce}'`,
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join('; '),
      // The function key sits in the page URL: keep it out of Referer headers and shared caches.
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    },
  };
});

export const dashboardRoutes: HttpRoute[] = [{ name: 'dashboard', methods: ['GET'], authLevel: 'function', route: 'dashboard', handler: dashboardHandler }];
