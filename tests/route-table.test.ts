/**
 * The Functions app and `coremachine dev` serve one route table (functions/routes.ts). This
 * compares what the host is given with what the dev server serves — names, methods, templates,
 * auth levels and handlers — and checks that the dev server's matcher sends a request for every
 * route (each regex alternative included) to that route, so a route cannot be shadowed locally.
 */
import { app, type HttpFunctionOptions } from '@azure/functions';
import { servedRoutes } from '../bin/cli/dev-server';
import { matchRoute } from '../bin/cli/route-match';
import { CONTROL_ACTION_NAMES } from '../models/control-actions';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));
// eslint-disable-next-line @typescript-eslint/no-require-imports -- registration happens on import, after the mock
require('../functions/index');

const registered = jest.mocked(app.http).mock.calls.map(([name, options]: [string, HttpFunctionOptions]) => ({
  name,
  methods: options.methods,
  route: options.route,
  authLevel: options.authLevel,
  handler: options.handler,
}));
const served = servedRoutes().map(({ name, methods, route, authLevel, handler }) => ({ name, methods, route, authLevel, handler }));
const byName = <T extends { name: string }>(rows: T[]) => [...rows].sort((a, b) => a.name.localeCompare(b.name));

/** Concrete paths for a template: each regex alternative of a constrained segment, a valid value for the rest. */
function samplePaths(template: string): string[] {
  let paths = [''];
  for (const part of template.split('/')) {
    const constrained = /^\{\w+:regex\(\^\((.*)\)\$\)\}$/.exec(part);
    const values = constrained?.[1] ? constrained[1].split('|') : part.startsWith('{') ? [part === '{jobId}' ? 'a'.repeat(64) : 'x'] : [part];
    paths = paths.flatMap((prefix) => values.map((value) => (prefix ? `${prefix}/${value}` : value)));
  }
  return paths;
}

test('the dev server serves exactly the routes the Functions app registers', () => {
  expect(registered.length).toBeGreaterThan(0);
  expect(new Set(registered.map((route) => route.name)).size).toBe(registered.length);
  expect(byName(served)).toEqual(byName(registered));
});

test('every registered route and method is reached by the dev server matcher', () => {
  const routes = servedRoutes();
  for (const route of registered) {
    for (const method of route.methods ?? []) {
      for (const path of samplePaths(route.route ?? route.name)) {
        const reached = routes.find((candidate) => candidate.methods.includes(method) && matchRoute(candidate.route, path));
        expect({ method, path, route: reached?.name }).toEqual({ method, path, route: route.name });
      }
    }
  }
});

test('the control route accepts exactly the control actions models/ defines', () => {
  const control = registered.find((route) => route.name === 'jobs-control');
  const actions = samplePaths(control?.route ?? '').map((path) => path.split('/').pop());
  expect(actions).toEqual([...CONTROL_ACTION_NAMES]);
});
