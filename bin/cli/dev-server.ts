import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { randomUUID } from 'node:crypto';
import { HttpRequest, HttpResponse, InvocationContext } from '@azure/functions';
import { CoreMachineError } from '../../core/errors';
import type { Logger } from '../../core/logger';
import type { LocalRuntime } from '../../core/local-runtime';
import { setAppContext } from '../../functions/app-context';
import { MAX_BODY_BYTES } from '../../functions/http-errors';
import type { HttpRoute } from '../../functions/http-route';
import { httpRoutes } from '../../functions/routes';
import { attachClientSignal } from '../../functions/client-signal';
import { HttpRefusal } from './http-refusal';
import { checkDeclaredLength, hasBody, readBodyWithLimit } from './request-body';
import { checkContentType, checkFunctionKey, checkHost, checkOrigin, isLoopbackAddress, type GuardOptions } from './request-guard';
import { parseRequestTarget } from './request-target';
import { matchRoute, routeSpecificity } from './route-match';

export interface DevServerOptions {
  port: number;
  host: string;
  /** When set, routes with authLevel 'function' need it as x-functions-key or ?code=, like the host. */
  functionKey: string | undefined;
  extraRoutes?: HttpRoute[];
  /** Body limit; the Functions routes' 256 KB unless a test wants it smaller. */
  maxBodyBytes?: number;
}

/** The port is taken, the address is not this machine's, or binding is not allowed. */
export class DevServerListenError extends CoreMachineError {
  override readonly type = 'DevServerListenError';
}

export interface DevServer {
  url: string;
  close: () => Promise<void>;
}

/**
 * Serves the Functions app's HTTP routes with the very same handlers on a plain Node server, over
 * the local runtime (engine + in-process transport + workers), so curl against `coremachine dev`
 * behaves like the deployed app. Before a route runs, the request's Host, origin, content type,
 * body size and key are checked (see request-guard.ts for why).
 */
export async function startDevServer(runtime: LocalRuntime, logger: Logger, options: DevServerOptions): Promise<DevServer> {
  setAppContext({ machine: runtime.machine, pool: runtime.database.pool, transport: runtime.transport, logger });
  const routes = servedRoutes(options.extraRoutes);
  const guard: GuardOptions = { loopbackOnly: isLoopbackAddress(options.host), port: options.port };
  const server = http.createServer((req, res) => {
    handle(req, res, routes, logger, options, guard).catch((error: unknown) => {
      const refusal = error instanceof HttpRefusal ? error : undefined;
      if (!refusal) logger.error('dev server request failed', { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      const status = refusal?.status ?? 500;
      const body = { error: { type: refusal?.type ?? 'DevServerError', message: error instanceof Error ? error.message : String(error) } };
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // A body left unread (refused before or while reading it) is not drained: the connection closes.
      res.writeHead(status, { 'content-type': 'application/json', ...(req.complete ? {} : { connection: 'close' }) });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error) =>
      reject(
        new DevServerListenError(
          `cannot listen on ${options.host}:${options.port}: ${error.message}; is something else using it? choose another --port or --host`,
          { cause: error },
        ),
      );
    server.once('error', failed);
    server.listen(options.port, options.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const address = server.address();
  guard.port = typeof address === 'object' && address ? address.port : options.port;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${shownHost}:${guard.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections of a browser tab would otherwise hold close() open.
        server.closeIdleConnections();
      }),
  };
}

/**
 * The Functions app's route table (plus a test's extra routes), most specific first: the host
 * prefers literal segments over parameters, and so must the first-match lookup here.
 */
export function servedRoutes(extraRoutes: readonly HttpRoute[] = []): HttpRoute[] {
  return [...httpRoutes, ...extraRoutes].sort((a, b) => routeSpecificity(b.route) - routeSpecificity(a.route));
}

async function handle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  routes: readonly HttpRoute[],
  logger: Logger,
  options: DevServerOptions,
  guard: GuardOptions,
): Promise<void> {
  const host = checkHost(req.headers.host, guard);
  const target = parseRequestTarget(req.url);
  const method = (req.method ?? 'GET').toUpperCase();
  checkOrigin(req, method, host);
  const limit = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const withBody = hasBody(req);
  if (withBody) {
    checkContentType(req);
    checkDeclaredLength(req, limit);
  }
  if (!target.pathname.startsWith('/api/')) {
    throw new HttpRefusal(404, 'NotFoundError', `no route for ${target.pathname.slice(0, 200)}: the API lives under /api/`);
  }
  const path = target.pathname.slice('/api/'.length).replace(/\/$/, '');
  const candidates = routes.map((route) => ({ route, params: matchRoute(route.route, path) })).filter((c) => c.params);
  const match = candidates.find((c) => c.route.methods.includes(method as never));
  if (!match?.params) {
    if (candidates.length > 0) throw new HttpRefusal(405, 'MethodNotAllowedError', `${method} is not allowed on /api/${path}`);
    throw new HttpRefusal(404, 'NotFoundError', `no route for /api/${path.slice(0, 200)}`);
  }
  const query = new URLSearchParams(target.search);
  if (match.route.authLevel === 'function' && options.functionKey) {
    const header = req.headers['x-functions-key'];
    checkFunctionKey((typeof header === 'string' ? header : undefined) ?? query.get('code') ?? undefined, options.functionKey);
  }
  const body = withBody ? await readBodyWithLimit(req, limit) : undefined;
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) if (typeof value === 'string') headers[key] = value;
  const request = new HttpRequest({
    method,
    url: `http://${host}${target.pathname}${target.search ? `?${target.search}` : ''}`,
    headers,
    params: match.params,
    query: Object.fromEntries(query),
    ...(body && body.length > 0 ? { body: { bytes: body } } : {}),
  });
  // The caller hung up before the answer was written: a long-poll need not keep asking the database.
  const gone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  attachClientSignal(request, gone.signal);
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
  if (!response.body) {
    res.end();
    return;
  }
  // Streamed, not buffered: a stored value (GET …/result) is served without holding it whole.
  try {
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), res);
  } catch (error) {
    // The client hung up: nothing is left to answer.
    if (!gone.signal.aborted) throw error;
  }
}
