import { reachable, startTestEmbeddedPostgres } from './postgres-server';
import { startPgBouncer } from './pgbouncer';

declare global {
  var __COREMACHINE_EMBEDDED_STOP__: (() => Promise<void>) | undefined;
  var __COREMACHINE_PGBOUNCER_STOP__: (() => Promise<void>) | undefined;
}

/** Picks the server once for the whole run; each test file then creates its own database on it. */
export default async function globalSetup(): Promise<void> {
  await pickServer();
  // jest.pgbouncer.config.js: the engine suites again, through PgBouncer in transaction mode.
  if (process.env.COREMACHINE_TEST_VIA_PGBOUNCER === '1') {
    const bouncer = await startPgBouncer(process.env.COREMACHINE_TEST_ADMIN_URL ?? '');
    globalThis.__COREMACHINE_PGBOUNCER_STOP__ = () => bouncer.stop();
    process.env.COREMACHINE_TEST_PGBOUNCER_PORT = String(bouncer.port);
    process.stderr.write(
      `\n[tests] through PgBouncer (transaction mode) on 127.0.0.1:${bouncer.port}, prepared statements ${process.env.COREMACHINE_PREPARED_STATEMENTS ?? 'on'}\n`,
    );
  }
}

async function pickServer(): Promise<void> {
  if (process.env.DATABASE_URL) {
    process.env.COREMACHINE_TEST_ADMIN_URL = process.env.DATABASE_URL;
    return;
  }
  // COREMACHINE_TEST_PROBE_URL exists so the embedded fallback itself can be exercised.
  const local = process.env.COREMACHINE_TEST_PROBE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  if (await reachable(local)) {
    process.env.COREMACHINE_TEST_ADMIN_URL = local;
    return;
  }
  const server = await startTestEmbeddedPostgres(54000 + Math.floor(Math.random() * 1000));
  globalThis.__COREMACHINE_EMBEDDED_STOP__ = server.stop;
  process.env.COREMACHINE_TEST_ADMIN_URL = server.url;
  process.stderr.write(`\n[tests] no PostgreSQL reachable: started embedded PostgreSQL at ${server.url}\n`);
}
