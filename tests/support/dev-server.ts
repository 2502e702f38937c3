import { startDevServer, type DevServer } from '../../bin/cli/dev-server';
import { loadConfig } from '../../core/config';
import { startLocalRuntime, type LocalRuntime } from '../../core/local-runtime';
import { createLogger, type Logger } from '../../core/logger';
import type { Registry } from '../../core/registry';
import { stuckJobs } from './harness';
import { createTestDatabase, type TestDatabase } from './test-database';

export interface DevServerFixture {
  readonly db: TestDatabase;
  readonly runtime: LocalRuntime;
  readonly server: DevServer;
}

/**
 * The lifecycle of a test file that talks to `coremachine dev` over HTTP (the CLI, the API): a
 * fresh database, a local runtime with `registry` (and any settings in `env`), a dev server on a
 * free loopback port. After the
 * file: `beforeClose` (release what the tests hold, such as a gate), the server and the runtime
 * closed, no job left QUEUED or PROCESSING, the database dropped. The returned object's getters
 * work once the hooks have run.
 */
export function useDevServer(
  registry: Registry,
  options: { functionKey?: string; beforeClose?: () => unknown; env?: Record<string, string>; logger?: Logger } = {},
): DevServerFixture {
  let fixture: DevServerFixture | undefined;
  const current = (): DevServerFixture => {
    if (!fixture) throw new Error('dev server was not started (use it inside tests or hooks)');
    return fixture;
  };
  beforeAll(async () => {
    const db = await createTestDatabase();
    const logger = options.logger ?? createLogger('silent');
    const runtime = await startLocalRuntime(loadConfig({ DATABASE_URL: db.url, LOG_LEVEL: 'silent', ...options.env }), registry, logger);
    const server = await startDevServer(runtime, logger, { port: 0, host: '127.0.0.1', functionKey: options.functionKey });
    fixture = { db, runtime, server };
  });
  afterAll(async () => {
    await options.beforeClose?.();
    const { db, runtime, server } = current();
    await server.close();
    await runtime.close();
    expect(await stuckJobs(db.pool)).toEqual([]);
    await db.drop();
  });
  return {
    get db() {
      return current().db;
    },
    get runtime() {
      return current().runtime;
    },
    get server() {
      return current().server;
    },
  };
}
