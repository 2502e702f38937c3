import { randomBytes } from 'node:crypto';
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import type { HttpRoute } from './http-route';
import { renderDashboardPage } from './dashboard/page';

/**
 * GET dashboard: the operator page. It is one self-contained HTML document (styles and script
 * inline, no CDN) because tsc copies no static files into dist and the Functions package ships dist
 * only. The page talks to the same /api routes with the key it was opened with (?code=).
 */
export function dashboardHandler(_request: HttpRequest, _context: InvocationContext): Promise<HttpResponseInit> {
  // A fresh nonce per response: only our own inline script and style run, so even if escaping
  // failed somewhere, injected markup could not execute script or phone home.
  const nonce = randomBytes(16).toString('base64');
  return Promise.resolve({
    status: 200,
    body: renderDashboardPage(nonce),
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
  });
}

export const dashboardRoutes: HttpRoute[] = [
  { name: 'dashboard', methods: ['GET'], authLevel: 'function', route: 'dashboard', handler: dashboardHandler },
];
