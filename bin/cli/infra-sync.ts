import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../core/paths';
import { UsageError, type CliIo } from './io';
import type { LocalArgs } from './local-args';

/**
 * An app made by `coremachine init` deploys with CoreMachine's Bicep, copied into its infra/ and
 * kept up to date from the installed package: `coremachine infra sync` after `npm update
 * coremachine`. A manifest records what each file held when it was last synced, so a file the app
 * changed on purpose is recognised and kept (and named) instead of overwritten; main.parameters.json
 * is the app's own (azd's environment mapping), written only when missing.
 */
export const INFRA_MANIFEST = '.coremachine-infra.json';

/** Folders and files of the package's infra/ that an app deploys with (not the migrations: they ship inside the artifact). */
const SYNCED_FILES = ['main.bicep'];
const SYNCED_FOLDERS = ['modules', 'hooks', 'servicebus-emulator'];
const APP_OWNED = ['main.parameters.json'];

interface Manifest {
  coremachine: string;
  /** sha256 of each file as the last sync wrote it, by '/'-separated path below infra/. */
  files: Record<string, string>;
}

export interface InfraFile {
  /** '/'-separated, relative to infra/. */
  file: string;
  content: Buffer;
}

const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex');

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(path.join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    return entry.isDirectory() ? listFiles(dir, relative) : entry.isFile() ? [relative] : [];
  });
}

/**
 * The azd hooks run the CLI of the package they belong to: in this repository the one it builds
 * (`node dist/bin/coremachine.js`), in an app the installed one (`npx --no-install coremachine`).
 */
export function adaptForApp(file: string, content: Buffer): Buffer {
  if (!file.startsWith('hooks/') || !file.endsWith('.sh')) return content;
  return Buffer.from(content.toString('utf8').replaceAll('node dist/bin/coremachine.js', 'npx --no-install coremachine'));
}

/** What the installed package gives an app's infra/: every synced file, adapted for an app. */
export function packageInfra(root: string = packageRoot()): InfraFile[] {
  const infra = path.join(root, 'infra');
  return [...SYNCED_FILES, ...SYNCED_FOLDERS.flatMap((folder) => listFiles(path.join(infra, folder)).map((file) => `${folder}/${file}`))]
    .sort()
    .map((file) => ({ file, content: adaptForApp(file, readFileSync(path.join(infra, file))) }));
}

function packageVersion(root: string): string {
  return (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
}

function readManifest(dir: string): Manifest | undefined {
  const file = path.join(dir, INFRA_MANIFEST);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Manifest) : undefined;
}

export interface SyncReport {
  written: string[];
  updated: string[];
  removed: string[];
  /** Changed in the app since the last sync: kept as they are. */
  kept: string[];
  /** Differences `check` finds: files that are not the package's. */
  differing: string[];
}

/**
 * Brings `dir` (an app's infra folder) to the package's Bicep. `force` overwrites files the app
 * changed; `dryRun` only reports (`infra check`).
 */
export function syncInfra(dir: string, options: { force?: boolean; dryRun?: boolean; root?: string } = {}): SyncReport {
  const root = options.root ?? packageRoot();
  const previous = readManifest(dir)?.files ?? {};
  const next: Record<string, string> = {};
  const report: SyncReport = { written: [], updated: [], removed: [], kept: [], differing: [] };
  const write = (file: string, content: Buffer) => {
    if (options.dryRun) return;
    const target = path.join(dir, ...file.split('/'));
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, content, file.endsWith('.sh') ? { mode: 0o755 } : {});
  };
  const wanted = packageInfra(root);
  for (const { file, content } of wanted) {
    const target = path.join(dir, ...file.split('/'));
    const hash = sha256(content);
    if (!existsSync(target)) {
      write(file, content);
      report.written.push(file);
      report.differing.push(file);
      next[file] = hash;
      continue;
    }
    const current = sha256(readFileSync(target));
    if (current === hash) {
      next[file] = hash;
      continue;
    }
    report.differing.push(file);
    // Unchanged since the last sync (or never synced and forced): the package's newer file replaces it.
    if (current === previous[file] || options.force) {
      write(file, content);
      report.updated.push(file);
      next[file] = hash;
    } else {
      report.kept.push(file);
      if (previous[file]) next[file] = previous[file];
    }
  }
  // Files the package no longer ships: removed when the app left them as synced.
  const shipped = new Set(wanted.map(({ file }) => file));
  for (const [file, hash] of Object.entries(previous)) {
    if (shipped.has(file)) continue;
    const target = path.join(dir, ...file.split('/'));
    if (!existsSync(target)) continue;
    report.differing.push(file);
    if (sha256(readFileSync(target)) === hash || options.force) {
      if (!options.dryRun) rmSync(target);
      report.removed.push(file);
    } else {
      report.kept.push(file);
    }
  }
  for (const file of APP_OWNED) {
    if (existsSync(path.join(dir, file))) continue;
    write(file, readFileSync(path.join(root, 'infra', file)));
    report.written.push(file);
  }
  if (!options.dryRun) {
    mkdirSync(dir, { recursive: true });
    const manifest: Manifest = { coremachine: packageVersion(root), files: next };
    writeFileSync(path.join(dir, INFRA_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  }
  return report;
}

/** `coremachine infra sync|check [--dir infra] [--force]`. */
export function runInfra(args: LocalArgs, io: CliIo): number {
  const sub = args.positionals[0];
  if (sub !== 'sync' && sub !== 'check') throw new UsageError(`unknown infra command ${JSON.stringify(sub)}: use sync or check`);
  const dir = path.resolve(io.cwd ?? process.cwd(), typeof args.values.dir === 'string' ? args.values.dir : 'infra');
  if (path.resolve(dir) === path.join(packageRoot(), 'infra'))
    throw new UsageError(`${dir} is CoreMachine's own infra folder; run this in an app made by coremachine init`);
  const version = packageVersion(packageRoot());
  if (sub === 'check') {
    const report = syncInfra(dir, { dryRun: true });
    if (report.differing.length === 0) {
      io.out(`${path.relative(io.cwd ?? process.cwd(), dir) || '.'} matches coremachine ${version}\n`);
      return 0;
    }
    io.err(
      `coremachine infra check: ${report.differing.length} file(s) differ from coremachine ${version}: ${report.differing.join(', ')}; run coremachine infra sync\n`,
    );
    return 1;
  }
  const report = syncInfra(dir, { force: args.values.force === true });
  const lines = [
    ...report.written.map((file) => `  added    ${file}`),
    ...report.updated.map((file) => `  updated  ${file}`),
    ...report.removed.map((file) => `  removed  ${file}`),
    ...report.kept.map((file) => `  kept     ${file} (changed in the app)`),
  ];
  io.out(`infra synced with coremachine ${version}${lines.length ? `:\n${lines.join('\n')}` : ': nothing to change'}\n`);
  if (report.kept.length === 0) return 0;
  io.err(
    `coremachine infra sync: ${report.kept.length} file(s) changed in the app were kept; compare them with node_modules/coremachine/infra/ and run coremachine infra sync --force to take the package's\n`,
  );
  return 1;
}
