import { app, type HttpHandler, type HttpMethod } from '@azure/functions';

/**
 * One route of the HTTP API. Each http-*.ts file exports its routes; they are registered with the
 * Functions host here and served by `coremachine dev` from the same table, so the two cannot drift.
 */
export interface HttpRoute {
  name: string;
  methods: HttpMethod[];
  /** Functions route template under /api, e.g. `jobs/{jobId}/events`. */
  route: string;
  authLevel: 'anonymous' | 'function';
  handler: HttpHandler;
}

/** The part of `app` from @azure/functions that registers functions: the user's, or a recorder (bin/cli/function-groups.ts). */
export type FunctionsApp = Pick<typeof app, 'http' | 'serviceBusQueue' | 'timer'>;

export function registerHttpRoutes(routes: readonly HttpRoute[], target: FunctionsApp = app): void {
  for (const { name, methods, route, authLevel, handler } of routes) target.http(name, { methods, route, authLevel, handler });
}
