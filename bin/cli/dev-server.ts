import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import type { Logger } from '../../core/logger';
import type { LocalRuntime } from '../../core/local-runtime';
import { setAppContext } from '../../functions/app-context';
import { controlRoutes } from '../../functions/http-control';
import { dashboardRoutes } from '../../functions/http-dashboard';
import { healthRoutes } from '../../functions/http-health';
import { jobRoutes } from '../../functions/http-jobs';
import { workerRoutes } from '../../functions/http-workers';
import type { HttpRoute } from '../../functions/http-route';
import { matchRoute, routeSpecificity } from './route-match';

export interface DevServerOptions {
  port: number;
  host: string;
  /** When set, routes with authLevel 'function' need it as x-functions-key or ?code=, like the host. */
  functionKey: string | undefined;
  extraRoutes?: HttpRoute[];
}

/**
 * Serves the Functions app's HTTP routes with the very same handlers on a plain Node server, over
 * the local runtime (engine + in-process transport + workers), so curl against `coremachine dev`
 * behaves like the deployed app.
 */
export async function startDevServer(runtime: LocalRuntime, logger: Logger, options: DevServerOptions): Promise<{ url: string; close: () => Promise<void> }> {
  setAppContext({ machine: runtime.machine, pool: runtime.database.pool, transport: runtime.transport, logger });
  const routes = [...jobRoutes, ...controlRoutes, ...healthRoutes, ...dashboardRoutes, ...workerRoutes, ...(options.extraRoutes ?? [])].sort(
    (a, b) => routeSpecificity(b.route) - routeSpecificity(a.route),
  );
  const server = http.createServer((req, res) => {
    handle(req, res, routes, logger, options).catch((error: unknown) => {
      logger.error('dev server request failed', { error: String(error) });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { type: 'DevServerError', message: String(error) } }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `http://${options.host}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, routes: readonly HttpRoute[], logger: Logger, options: DevServerOptions): Promise<void> {
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
  const method = (req.method ?? 'GET').toUpperCase();
  const send = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (!url.pathname.startsWith('/api/')) {
    send(404, { error: { type: 'NotFound', message: `no route for ${url.pathname}: the API lives under /api/` } });
    return;
  }
  const path = url.pathname.slice('/api/'.length).replace(/\/$/, '');
  const candidates = routes.map((route) => ({ route, params: matchRoute(route.route, path) })).filter((c) => c.params);
  const match = candidates.find((c) => c.route.methods.includes(method as never));
  if (!match?.params) {
    if (candidates.length > 0) send(405, { error: { type: 'MethodNotAllowed', message: `${method} is not allowed on /api/${path}` } });
    else send(404, { error: { type: 'NotFound', message: `no route for /api/${path}` } });
    return;
  }
  if (match.route.authLevel === 'function' && options.functionKey) {
    const presented = req.headers['x-functions-key'] ?? url.searchParams.get('code');
    if (presented !== options.functionKey) {
      send(401, { error: { type: 'Unauthorized', message: 'this route needs a function key (x-functions-key header or ?code=)' } });
      return;
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) if (typeof value === 'string') headers[key] = value;
  const request = new HttpRequest({
    method,
    url: url.toString(),
    headers,
    params: match.params,
    query: Object.fromEntries(url.searchParams),
    ...(chunks.length > 0 ? { body: { bytes: Buffer.concat(chunks) } } : {}),
  });
  const context = new InvocationContext({
    invocationId: randomUUID(),
    functionName: match.route.name,
    // A handler's error (a 5xx) must show at the default log level; its chatter stays at debug.
    logHandler: (level, ...args) => {
      const fields = { function: match.route.name, level, message: args.map(String).join(' ') };
      if (level === 'error' || level === 'critical') logger.error('function log', fields);
      else if (level === 'warning') logger.warn('function log', fields);
      else logger.debug('function log', fields);
    },
  });
  const response = new HttpResponse(await match.route.handler(request, context));
  const responseHeaders: Record<string, string> = {};
  response.headers.forEach((value, key) => (responseHeaders[key] = value));
  res.writeHead(response.status, responseHeaders);
  res.end(Buffer.from(await response.arrayBuffer()));
}
