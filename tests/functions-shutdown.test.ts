import { app, AppTerminateContext } from '@azure/functions';
import type { AppContext } from '../functions/app-context';
import { getAppContext, setAppContext } from '../functions/app-context';
import { captureLogger } from './support/harness';

jest.mock('@azure/functions', () => ({
  ...jest.requireActual<typeof import('@azure/functions')>('@azure/functions'),
  app: { http: jest.fn(), serviceBusQueue: jest.fn(), timer: jest.fn(), hook: { appTerminate: jest.fn() } },
}));
// eslint-disable-next-line @typescript-eslint/no-require-imports -- registration happens on import, after the mock
require('../functions/index');

test('the app terminate hook drains running tasks, then closes the transport and the pool, and forgets the context', async () => {
  const hooks = jest.mocked(app.hook.appTerminate).mock.calls.map(([handler]) => handler);
  expect(hooks).toHaveLength(1);
  const closed: string[] = [];
  const logs: string[] = [];
  const context = {
    machine: { drain: (graceMs: number) => Promise.resolve(void closed.push(`drained ${graceMs}`)) },
    pool: { end: () => Promise.resolve(void closed.push('pool')) },
    transport: { close: () => Promise.reject(new Error('link already gone')).finally(() => closed.push('transport')) },
    logger: captureLogger(logs),
  } as unknown as AppContext;
  setAppContext(context);

  await hooks[0]?.(new AppTerminateContext());

  expect(closed[0]).toBe('drained 20000');
  expect(closed.slice(1).sort()).toEqual(['pool', 'transport']);
  // A transport that fails to close does not keep the pool open, and the failure is logged.
  expect(logs.join('\n')).toContain('link already gone');
  // The next invocation builds a fresh context (here: none, since DATABASE_URL is unset).
  await expect(getAppContext({})).rejects.toThrow(/DATABASE_URL/);
});
