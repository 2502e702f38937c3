import { createTestDatabase, type TestDatabase } from './support/test-database';
import { DEFAULT_CHAOS, invariantViolations, runChaos } from './support/chaos';

/**
 * Seeded fault injection: duplicated deliveries, redelivery while a handler still runs, crashes
 * between commit and send, crashes inside handlers, transient and permanent errors, and
 * PostgreSQL connections killed mid-run. `npm run soak` runs it bigger (COREMACHINE_SOAK_JOBS).
 */
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase({ poolMax: 4 });
});
afterAll(async () => {
  await db.drop();
});

const jobs = Number(process.env.COREMACHINE_SOAK_JOBS ?? DEFAULT_CHAOS.jobs);
const seed = Number(process.env.COREMACHINE_CHAOS_SEED ?? DEFAULT_CHAOS.seed);
const timeoutMs = Math.max(DEFAULT_CHAOS.timeoutMs, jobs * 600);

test(
  `${jobs} jobs x 3 stages x 20 tasks under random faults (seed ${seed}): every job terminal, every counter exact, every effect once`,
  async () => {
    const report = await runChaos(db, { ...DEFAULT_CHAOS, jobs, seed, timeoutMs });
    console.log(`fault injection (seed ${seed}, ${jobs} jobs x 3 x 20 tasks) in ${(report.elapsedMs / 1000).toFixed(1)} s\n` + JSON.stringify(report, null, 2));
    expect(await invariantViolations(db.pool, 20)).toEqual([]);
    expect(report.outcome.stillPending).toBe(0);
    expect((report.outcome.COMPLETED ?? 0) + (report.outcome.FAILED ?? 0)).toBe(jobs);
    // Faults of every kind were actually injected, and the machinery that recovers from them ran.
    for (const kind of ['duplicatedMessages', 'sendFailuresAfterCommit', 'transientErrors', 'crashesInHandler', 'connectionsKilled']) {
      expect(report.injected[kind]).toBeGreaterThan(0);
    }
    expect(report.recovered.leasesExpiredAndRequeued).toBeGreaterThan(0);
    expect(report.recovered.outboxRowsResent).toBeGreaterThan(0);
    // Only a permanent error or a dead letter may fail a job; transient faults must all be absorbed.
    expect(report.outcome.FAILED ?? 0).toBeLessThanOrEqual(
      (report.injected.permanentErrors ?? 0) + (report.recovered.deadLettered ?? 0) + (report.recovered.leasesExpiredAndFailed ?? 0),
    );
  },
  timeoutMs + 120_000,
);
