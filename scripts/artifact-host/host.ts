/**
 * Loads a deployment artifact the way the Azure Functions Node worker does, outside the repository:
 * unpack the zip into an empty folder, then run its entry point in a fresh `node` with the fake
 * worker preloaded. tests/package-artifact.test.ts checks what it registers;
 * bench/artifact.ts times it.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { unzipSync } from 'fflate';
import { packageRoot } from '../../core/paths';
import type { LoadReport } from './host-protocol';

export type { LoadReport } from './host-protocol';

export interface FakeWorker {
  preload: string;
  loader: string;
}

/** Writes fake-functions-core.js and load-app.js, each a self-contained bundle, into `dir`. */
export function prepareFakeWorker(dir: string, root: string = packageRoot()): FakeWorker {
  const sources = path.join(root, 'scripts', 'artifact-host');
  buildSync({
    entryPoints: { 'fake-functions-core': path.join(sources, 'fake-functions-core.ts'), 'load-app': path.join(sources, 'load-app.ts') },
    outdir: dir,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'warning',
  });
  return { preload: path.join(dir, 'fake-functions-core.js'), loader: path.join(dir, 'load-app.js') };
}

/** Unpacks a zip into `dir` (which should be empty); an entry that would land outside it is refused. */
export function unpack(zipFile: string, dir: string): string[] {
  const entries = unzipSync(readFileSync(zipFile));
  const names = Object.keys(entries).sort();
  for (const name of names) {
    const target = path.resolve(dir, name);
    if (!target.startsWith(path.resolve(dir) + path.sep)) throw new Error(`zip entry ${name} points outside ${dir}`);
    if (name.endsWith('/')) {
      mkdirSync(target, { recursive: true });
      continue;
    }
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, entries[name] ?? new Uint8Array());
  }
  return names.filter((name) => !name.endsWith('/'));
}

export interface LoadOptions {
  /** The environment of the child, as the only variables it sees (default: PATH and HOME=appDir). */
  env?: Record<string, string>;
  node?: string;
  timeoutMs?: number;
}

export interface LoadResult {
  report: LoadReport;
  stderr: string;
  /** Spawn to exit, as the parent saw it. */
  wallMs: number;
}

/**
 * Runs the app in `appDir` in a child `node`: its working directory is the app, NODE_PATH and
 * NODE_OPTIONS are not passed on, and HOME points at the app so the global module folders
 * ($HOME/.node_modules) hold nothing either. No database or Service Bus settings are given: loading
 * must not need them.
 */
export function loadArtifact(appDir: string, worker: FakeWorker, options: LoadOptions = {}): Promise<LoadResult> {
  const env = options.env ?? { PATH: process.env.PATH ?? '', HOME: appDir };
  const started = performance.now();
  const child = spawn(options.node ?? process.execPath, ['-r', worker.preload, worker.loader, appDir], { cwd: appDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const wallMs = performance.now() - started;
      const line = stdout.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || !line.startsWith('{')) {
        reject(new Error(`loading the artifact in ${appDir} exited with ${signal ?? code}:\n${stderr}${stdout}`));
        return;
      }
      resolve({ report: JSON.parse(line) as LoadReport, stderr, wallMs });
    });
  });
}
