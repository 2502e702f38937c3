import { reachable, startTestEmbeddedPostgres } from './postgres-server';

declare global {
  var __COREMACHINE_EMBEDDED_STOP__: (() => Promise<void>) | undefined;
}

/** Picks the server once for the whole run; each test file then creates its own database on it. */
export default async function globalSetup(): Promise<void> {
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
