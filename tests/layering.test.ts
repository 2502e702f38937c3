/**
 * The house's dependency rules (DESIGN.md "Top-level layout"), checked on the import statements:
 * models/ imports nothing but zod, jobs/ reaches the engine only through models/, core/ never
 * imports the Functions SDK, and the transports never import the engine.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'data' ? [] : sourceFiles(relative);
    return entry.name.endsWith('.ts') ? [relative] : [];
  });
}

/** Every module specifier a file imports or re-exports, resolved to a root-relative path when relative. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(root, file), 'utf8');
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'|require\('([^']+)'\)/gm)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
  return specifiers.map((spec) => (spec.startsWith('.') ? path.relative(root, path.resolve(root, path.dirname(file), spec)) : spec));
}

function offending(dir: string, allowed: (target: string) => boolean): string[] {
  return sourceFiles(dir).flatMap((file) => importsOf(file).filter((target) => !allowed(target)).map((target) => `${file} → ${target}`));
}

const inside = (dir: string) => (target: string) => target === dir || target.startsWith(`${dir}/`);
const nodeBuiltin = (target: string) => target.startsWith('node:');

test('the scan sees the imports it checks', () => {
  expect(importsOf('models/api.ts')).toEqual(expect.arrayContaining(['zod', 'models/control-actions']));
});

test('models/ imports nothing but zod (and itself)', () => {
  expect(offending('models', (t) => t === 'zod' || inside('models')(t))).toEqual([]);
});

test('jobs/ reaches the engine only through models/', () => {
  expect(offending('jobs', (t) => t === 'zod' || nodeBuiltin(t) || inside('models')(t) || inside('jobs')(t))).toEqual([]);
});

test('core/ never imports the Functions SDK, functions/ or bin/', () => {
  expect(offending('core', (t) => t !== '@azure/functions' && !inside('functions')(t) && !inside('bin')(t))).toEqual([]);
});

test('the transports never import the engine', () => {
  expect(offending('core/transport', (t) => !inside('core/engine')(t) && t !== 'core/janitor' && t !== 'core/worker')).toEqual([]);
});
