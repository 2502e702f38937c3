import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BuildOptions } from 'esbuild';
import { packageRoot } from '../../core/paths';

/**
 * The dashboard's browser script: functions/dashboard/client/*.ts bundled by esbuild into one
 * IIFE. `npm run build` writes it next to this module in dist/ (dist/functions/dashboard/, below
 * the host's dist/functions/*.js glob, so the Functions host never loads it as a function), which
 * is what the deployed app reads: esbuild is a devDependency and is not deployed. Where no bundle
 * was built — jest and ts-node run the TypeScript sources — it is built from the sources once, in
 * memory, on first use.
 */
export const BUNDLE_FILE = 'client.bundle.js';

export interface ClientScriptSources {
  /** A bundle written by `npm run build`; used as is when present. */
  prebuilt: string;
  /** The client's entry point, bundled on demand when there is no prebuilt file. */
  entry: string;
}

export function defaultSources(): ClientScriptSources {
  return { prebuilt: path.join(__dirname, BUNDLE_FILE), entry: path.join(packageRoot(), 'functions', 'dashboard', 'client', 'main.ts') };
}

/** One set of options for the build step and the on-demand build, so both produce the same script. */
export function bundleOptions(entry: string): BuildOptions & { write: false } {
  return {
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    legalComments: 'none',
    // The client's own tsconfig (DOM lib); esbuild only strips types, `npm run typecheck` checks them.
    tsconfig: path.join(path.dirname(entry), 'tsconfig.json'),
    logLevel: 'silent',
  };
}

export async function bundleClient(entry: string): Promise<string> {
  const esbuild = await import('esbuild');
  // A one-off build: stop esbuild's service process afterwards so it does not outlive the build
  // (it would keep a jest worker or a dev server's exit waiting).
  const result = await esbuild.build(bundleOptions(entry)).finally(() => esbuild.stop());
  const output = result.outputFiles[0];
  if (!output) throw new Error(`esbuild produced no output for ${entry}`);
  return output.text;
}

/**
 * The script is inlined in the page, so a literal `</script` inside it would end the element
 * early. esbuild escapes it in strings; this makes sure nothing else slipped through.
 */
function checked(script: string, origin: string): string {
  if (/<\/script/i.test(script)) throw new Error(`the dashboard bundle from ${origin} contains "</script" and cannot be inlined`);
  return script;
}

export async function readClientScript(sources: ClientScriptSources): Promise<string> {
  if (existsSync(sources.prebuilt)) return checked(await readFile(sources.prebuilt, 'utf8'), sources.prebuilt);
  if (existsSync(sources.entry)) return checked(await bundleClient(sources.entry), sources.entry);
  throw new Error(`no dashboard bundle at ${sources.prebuilt} and no client sources at ${sources.entry}: run npm run build`);
}

let cached: Promise<string> | undefined;

/** The script for this process, read or built once; a failure is not cached, the next request tries again. */
export function clientScript(): Promise<string> {
  cached ??= readClientScript(defaultSources()).catch((error: unknown) => {
    cached = undefined;
    throw error;
  });
  return cached;
}

/** `node dist/functions/dashboard/bundle.js` (npm run build): writes the bundle next to this module. */
async function writeBundle(): Promise<void> {
  const { prebuilt, entry } = defaultSources();
  const script = checked(await bundleClient(entry), entry);
  await writeFile(prebuilt, script);
  process.stdout.write(`dashboard bundle: ${path.relative(process.cwd(), prebuilt)} (${Math.round(script.length / 1024)} KB)\n`);
}

if (require.main === module) {
  writeBundle().catch((error: unknown) => {
    process.stderr.write(`dashboard bundle failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  });
}
