/**
 * The engine suites (full job, at-least-once, fault injection, stage checks, and issue 13's
 * limits, deadlines and signals: advisory transaction locks and row locks across pooled
 * connections) a second time, through a real PgBouncer in transaction mode (Debian's 1.18,
 * started by tests/support/global-setup.ts): `npm run test:pgbouncer`; `.ci/run`
 * runs it after `npm test`. PgBouncer 1.18 cannot track named prepared statements, so this run
 * turns them off, as a deployment behind such a pooler must.
 */
const fs = require('node:fs');
const base = require('./jest.config.js');

const bin = process.env.PGBOUNCER_BIN ?? '/usr/sbin/pgbouncer';
const available = fs.existsSync(bin);
process.env.COREMACHINE_TEST_VIA_PGBOUNCER = '1';
process.env.COREMACHINE_PREPARED_STATEMENTS = 'off';
if (!available && process.env.COREMACHINE_REQUIRE_PGBOUNCER === '1') {
  // CI installs PgBouncer and must not pass by skipping the run.
  throw new Error(`COREMACHINE_REQUIRE_PGBOUNCER=1 but ${bin} does not exist: apt-get install pgbouncer, or set PGBOUNCER_BIN`);
}
if (!available) {
  process.stderr.write(`\n[tests] ${bin} not found: skipping the PgBouncer run (apt-get install pgbouncer, or set PGBOUNCER_BIN)\n\n`);
}

module.exports = {
  ...base,
  testMatch: available
    ? [
        '**/full-job.test.ts',
        '**/at-least-once.test.ts',
        '**/fault-injection.test.ts',
        '**/pgbouncer.test.ts',
        '**/stage-check.test.ts',
        '**/concurrency-limits.test.ts',
        '**/deadlines.test.ts',
        '**/signals.test.ts',
      ]
    : [],
  passWithNoTests: !available,
};
