export default async function globalTeardown(): Promise<void> {
  await globalThis.__COREMACHINE_PGBOUNCER_STOP__?.();
  await globalThis.__COREMACHINE_EMBEDDED_STOP__?.();
}
