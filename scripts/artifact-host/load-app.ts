/**
 * `node -r fake-functions-core.js load-app.js <app folder>`: the worker's startApp, reduced to what
 * decides whether an artifact starts. It reads the app's package.json, loads the file "main" names
 * (require, or import() for an ES module, as loadScriptFile.ts does), locks registration, and
 * prints one JSON line: what was registered, when loading finished (ms since the process
 * started, and CPU time used), every module file loaded from outside the app folder (there should be none), and
 * which OpenTelemetry global providers the app registered. Then it exits: whatever timers the
 * app started are not its business.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FAKE_HOST_KEY, type FakeHost, type LoadReport } from './host-protocol';

async function main(): Promise<void> {
  const host = (globalThis as Record<symbol, FakeHost | undefined>)[FAKE_HOST_KEY];
  if (!host) throw new Error('preload fake-functions-core.js first (node -r)');
  const appDir = path.resolve(process.argv[2] ?? '.');
  const manifest = JSON.parse(readFileSync(path.join(appDir, 'package.json'), 'utf8')) as { main?: unknown; type?: unknown };
  if (typeof manifest.main !== 'string') throw new Error('package.json has no "main"');
  // The worker expands a glob here; the artifact names one file, and a pattern would be a mistake.
  if (/[*?[\]{}]/.test(manifest.main)) throw new Error(`package.json "main" is a pattern (${manifest.main}); the artifact names one file`);
  const entry = path.join(appDir, manifest.main);
  if (!existsSync(entry)) throw new Error(`package.json "main" names ${manifest.main}, which does not exist`);
  if (manifest.type === 'module' || entry.endsWith('.mjs')) await import(pathToFileURL(entry).href);
  else createRequire(entry)(entry);
  host.lock();
  const loadedMs = performance.now();
  const cpu = process.cpuUsage();

  const inside = (file: string) => [appDir, __dirname].some((dir) => file.startsWith(dir + path.sep));
  const registry = (globalThis as Record<symbol, object | undefined>)[Symbol.for('opentelemetry.js.api.1')];
  const report: LoadReport = {
    ...host.record,
    main: manifest.main,
    loadedMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    modulesOutsideApp: Object.keys(require.cache).filter((file) => !inside(file)),
    modulesLoaded: Object.keys(require.cache)
      .filter((file) => file.startsWith(appDir + path.sep))
      .map((file) => path.relative(appDir, file).split(path.sep).join('/'))
      .sort(),
    telemetryGlobals: registry ? Object.keys(registry).filter((key) => key !== 'version') : [],
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`load-app: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
