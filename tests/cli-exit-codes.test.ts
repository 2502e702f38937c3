import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { appRegistry } from './support/registry';
import { defineJob, defineTask } from '../models';
import { runCliCaptured, type CliRun } from './support/cli-run';
import { formatDuration } from '../bin/cli/format';
import { barCells, ProgressDisplay, progressMilestone, renderStages, type JobProgress } from '../bin/cli/progress';
import { createTestDatabase, type TestDatabase } from './support/test-database';

// In-process runs of the local commands (demo, dev, db) against a throwaway DATABASE_URL: what
// they print and the exit code they return on every path. The embedded PostgreSQL and real
// signals are in cli-embedded.test.ts, which runs the built CLI as a child process.

const failing = defineTask({
  type: 'test.exit.fails',
  parameters: z.object({ index: z.number().int() }),
  handler: ({ index }) => {
    throw new Error(`task ${index} fails on purpose`);
  },
});
const failingJob = defineJob({ type: 'test.exit_fails', parameters: z.object({ n: z.number().int().min(1) }) })
  .stage({ name: 'fail', task: failing, fanOut: ({ parameters }) => Array.from({ length: parameters.n }, (_, index) => ({ index })) })
  .finalize(() => ({}));
const registry = appRegistry(failingJob);

let db: TestDatabase;
let tmp: string;
beforeAll(async () => {
  db = await createTestDatabase();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-exit-'));
});
afterAll(async () => {
  await db.drop();
  rmSync(tmp, { recursive: true, force: true });
});

type Run = CliRun;

function cli(args: string[], env: Record<string, string | undefined> = {}, isTTY = false): Promise<Run> {
  return runCliCaptured(args, { isTTY, env: { DATABASE_URL: db.url, LOG_LEVEL: 'silent', ...env } }, { registry });
}

test('every command refuses unknown flags with exit 2 and its usage, and --help prints usage and exits 0 without running', async () => {
  for (const args of [
    ['dev', '--prot', '17202'],
    ['dev', '--port', 'abc'],
    ['dev', '--port', '70000'],
    ['dev', 'extra'],
    ['demo', '--bogus'],
    ['demo', '--n', '5', '--params', '{"n":5}'],
    ['demo', '--params', '{n:5}'],
    ['demo', '--file', path.join(tmp, 'missing.json')],
    ['demo', '--n', 'many'],
    ['db'],
    ['db', 'frobnicate'],
    ['db', 'status', '--force'],
  ]) {
    const run = await cli(args);
    expect({ args, code: run.code }).toEqual({ args, code: 2 });
    expect(run.stderr).toMatch(new RegExp(`^coremachine ${args[0]}: .+\\nusage: coremachine ${args[0]} `));
    expect(run.stdout).toBe('');
  }
  for (const args of [
    ['demo', '--help'],
    ['dev', '--help'],
    ['db', '--help'],
    ['db', 'migrate', '-h'],
    ['status', '--help'],
    ['submit', '--help'],
    ['cancel', '--help'],
    ['jobs', '-h'],
  ]) {
    const run = await cli(args);
    expect({ args, code: run.code, stderr: run.stderr }).toEqual({ args, code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^usage: coremachine /);
    expect(run.stdout).not.toMatch(/submitted|database:/);
  }
  expect(await db.pool.query('SELECT 1 FROM coremachine.jobs')).toMatchObject({ rowCount: 0 });
});

test('demo: an unknown job type and invalid parameters exit 1; a job that ends FAILED exits 1', async () => {
  const unknown = await cli(['demo', '--job', 'nope']);
  expect(unknown).toMatchObject({ code: 1, stdout: '' });
  expect(unknown.stderr).toMatch(/^coremachine: UnknownJobTypeError: unknown job type "nope"/);

  const invalid = await cli(['demo', '--params', '{"n":0}']);
  expect(invalid.code).toBe(1);
  expect(invalid.stderr).toMatch(/^coremachine: ValidationError: invalid parameters/);

  const failed = await cli(['demo', '--job', 'test.exit_fails', '--params', '{"n":2}']);
  expect(failed.code).toBe(1);
  expect(failed.stdout).toMatch(/job FAILED in /);
  expect(failed.stdout).toContain('fails on purpose');
});

test("demo --params and --file pass parameters; a re-run reports the job's own duration, not the re-run's", async () => {
  const first = await cli(['demo', '--params', '{"n":5}']);
  expect(first.stderr).toBe('');
  expect(first.code).toBe(0);
  expect(first.stdout).toContain('"replies": 5');
  const file = path.join(tmp, 'params.json');
  writeFileSync(file, '{"n": 5}');
  const again = await cli(['demo', '--file', file]);
  expect(again.code).toBe(0);
  expect(again.stdout).toMatch(/^already submitted hello_world job/m);
  const jobId = /job ([0-9a-f]{64})/.exec(first.stdout)?.[1];
  const { rows } = await db.pool.query<{ created_at: Date; finished_at: Date }>('SELECT created_at, finished_at FROM coremachine.jobs WHERE job_id = $1', [
    jobId,
  ]);
  const real = formatDuration(rows[0]?.created_at.toISOString() ?? null, rows[0]?.finished_at.toISOString() ?? null);
  expect(first.stdout).toContain(`job COMPLETED in ${real}\n`);
  expect(again.stdout).toContain(`job COMPLETED in ${real}\n`);
});

test('a fresh DATABASE_URL is migrated on start and says so; --no-migrate refuses it; db status on a newer schema says upgrade', async () => {
  const fresh = await createTestDatabase({ migrate: false });
  try {
    const refused = await cli(['demo', '--n', '2', '--no-migrate'], { DATABASE_URL: fresh.url });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^coremachine: SchemaVersionError: database schema is at version 0 .*coremachine db migrate/);
    const status = await cli(['db', 'status'], { DATABASE_URL: fresh.url });
    expect(status).toMatchObject({
      code: 1,
      stdout: expect.stringMatching(/version 0, this CoreMachine expects \d+ \(run "coremachine db migrate"\)/) as unknown,
    });

    const migrated = await cli(['demo', '--n', '2'], { DATABASE_URL: fresh.url });
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toMatch(/migrated schema 0 → \d+/);
    const second = await cli(['demo', '--n', '2'], { DATABASE_URL: fresh.url });
    expect(second.stdout).toMatch(/schema at version \d+/);

    await fresh.pool.query("INSERT INTO coremachine.schema_migrations (version, name) VALUES (999, 'from_the_future')");
    const newer = await cli(['db', 'status'], { DATABASE_URL: fresh.url });
    expect(newer.code).toBe(1);
    expect(newer.stdout).toMatch(/version 999, .*upgrade CoreMachine/);
    expect(newer.stdout).not.toContain('run "coremachine db migrate"');
  } finally {
    await fresh.drop();
  }
});

test('an unreachable DATABASE_URL is one line naming host:port and what to check, exit 1', async () => {
  const refused = await cli(['db', 'status'], { DATABASE_URL: 'postgres://postgres:secret@127.0.0.1:1/nothing' });
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/^coremachine: cannot connect to the database at 127\.0\.0\.1:1: .*\(ECONNREFUSED\); check DATABASE_URL\n$/);
  expect(refused.stderr).not.toContain('secret');
  const unknownHost = await cli(['demo', '--n', '1'], { DATABASE_URL: 'postgres://postgres@base.invalid:5433/db' });
  expect(unknownHost.code).toBe(1);
  expect(unknownHost.stderr).toMatch(/^coremachine: cannot connect to the database at base\.invalid:5433: .*\((ENOTFOUND|EAI_AGAIN)\); check DATABASE_URL\n$/);
});

test('progress: never a full bar before the stage is done; a few plain lines off a TTY, redrawn in place on one', () => {
  expect(barCells(4896, 5000)).toBe(23);
  expect(barCells(4999, 5000)).toBe(23);
  expect(barCells(5000, 5000)).toBe(24);
  expect(barCells(0, 0)).toBe(24);
  // A stage still PROCESSING (e.g. creating its tasks in chunks) is never drawn full.
  expect(barCells(0, 0, false)).toBe(0);
  expect(barCells(100, 100, false)).toBe(23);
  const job = (done: number, status = 'PROCESSING'): JobProgress => ({
    jobId: 'a'.repeat(64),
    status,
    stage: 1,
    totalStages: 1,
    stages: [{ stage: 1, name: 'work', status, total: 5000, completed: done, failed: 0 }],
  });
  expect(renderStages(job(4896))).toContain('[#######################.] 4896/5000');

  const plain: string[] = [];
  const pipe = new ProgressDisplay({ out: (t) => plain.push(t), err: () => undefined, isTTY: false, env: {} });
  const tty: string[] = [];
  const terminal = new ProgressDisplay({ out: (t) => tty.push(t), err: () => undefined, isTTY: true, columns: 200, env: {} });
  for (let done = 0; done <= 5000; done += 50) {
    const frame = job(done, done === 5000 ? 'COMPLETED' : 'PROCESSING');
    pipe.show(renderStages(frame), progressMilestone(frame));
    terminal.show(renderStages(frame), progressMilestone(frame));
  }
  // 0%, 25%, 50%, 75% and the completed frame: five blocks instead of 101.
  expect(plain).toHaveLength(5);
  expect(plain.join('')).not.toContain('\x1b[');
  expect(plain.at(-1)).toContain('5000/5000 completed');
  expect(tty.filter((t) => t === '\x1b[2F\x1b[0J')).toHaveLength(100);
});
