import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Registry } from '../../core/registry';
import type { Registration } from '../../models';

/** Where an app made by `coremachine init` says its registration and Functions entry point are (package.json "coremachine"). */
export interface AppManifest {
  /** The compiled module that exports `registration` (default export accepted), relative to the app. */
  registration?: string;
  /** The Functions entry point `coremachine package` bundles, relative to the app. */
  functions?: string;
  /** Folders copied beside the bundle: artifact folder → app folder. */
  copy?: Record<string, string>;
}

/** package.json's "coremachine" field in `dir`, or undefined when there is none (this repository has none). */
export function readAppManifest(dir: string): AppManifest | undefined {
  const file = path.join(dir, 'package.json');
  if (!existsSync(file)) return undefined;
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as { coremachine?: unknown };
  if (manifest.coremachine === undefined) return undefined;
  if (typeof manifest.coremachine !== 'object' || manifest.coremachine === null || Array.isArray(manifest.coremachine)) {
    throw new Error(`${file}: "coremachine" must be an object such as {"registration": "dist/jobs/index.js"}`);
  }
  return manifest.coremachine;
}

function isRegistration(value: unknown): value is Registration {
  const candidate = value as Partial<Registration> | undefined;
  return typeof candidate === 'object' && candidate !== null && Array.isArray(candidate.jobs) && Array.isArray(candidate.schedules);
}

/**
 * The registry a local command serves: the module `--registration` names, else the one the app's
 * package.json names ("coremachine": {"registration": …}), else undefined (the shipped examples).
 * The module is compiled JavaScript (build the app first); it exports `registration`.
 */
export function loadAppRegistry(flag: string | undefined, cwd: string): { registry: Registry; from: string } | undefined {
  const manifest = flag === undefined ? readAppManifest(cwd) : undefined;
  const spec = flag ?? manifest?.registration;
  if (spec === undefined) return undefined;
  const where = flag === undefined ? 'package.json "coremachine.registration"' : '--registration';
  const file = path.resolve(cwd, spec);
  let resolved: string;
  try {
    resolved = require.resolve(file);
  } catch {
    throw new Error(`${where} names ${spec}, which does not exist: build the app first (npm run build)`);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the app's module, named at run time
  const loaded = require(resolved) as { registration?: unknown; default?: unknown };
  const registration = isRegistration(loaded.registration) ? loaded.registration : isRegistration(loaded.default) ? loaded.default : undefined;
  if (!registration) throw new Error(`${where}: ${spec} exports no registration (export const registration = defineRegistration({ jobs: [...] }))`);
  return { registry: Registry.from(registration), from: path.relative(cwd, resolved) || resolved };
}
