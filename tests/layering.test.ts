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
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'|require\('([^']+)'\)/gm)].map(
    (m) => m[1] ?? m[2] ?? m[3] ?? '',
  );
  return specifiers.map((spec) => (spec.startsWith('.') ? path.relative(root, path.resolve(root, path.dirname(file), spec)) : spec));
}

function offending(dir: string, allowed: (target: string) => boolean): string[] {
  return sourceFiles(dir).flatMap((file) =>
    importsOf(file)
      .filter((target) => !allowed(target))
      .map((target) => `${file} → ${target}`),
  );
}

const inside = (dir: string) => (target: string) => target === dir || target.startsWith(`${dir}/`);
const nodeBuiltin = (target: string) => target.startsWith('node:');

test('the scan sees the imports it checks', () => {
  expect(importsOf('models/api.ts')).toEqual(expect.arrayContaining(['zod', 'models/control-actions']));
});

test('models/ imports nothing but zod (and itself)', () => {
  expect(offending('models', (t) => t === 'zod' || inside('models')(t))).toEqual([]);
});

/** The package's public entry points (package.json "exports"): what an app that installs CoreMachine can import. */
const PUBLIC_ENTRY_POINTS = ['coremachine', 'coremachine/azure-functions', 'coremachine/testing'];

test('the public entry points are exactly the exports of package.json, each typed and mapped for the repository', () => {
  const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
  const exported = Object.keys(manifest.exports).filter((key) => key !== './package.json');
  expect(exported.map((key) => (key === '.' ? 'coremachine' : `coremachine/${key.slice(2)}`))).toEqual(PUBLIC_ENTRY_POINTS);
  for (const key of exported)
    expect(manifest.exports[key]).toEqual({
      types: expect.stringMatching(/^\.\/dist\/package\/[\w-]+\.d\.ts$/) as string,
      default: expect.any(String) as string,
    });
});

test('jobs/ is written as an app writes its jobs: the public entry point, zod and Node built-ins only', () => {
  expect(offending('jobs', (t) => t === 'coremachine' || t === 'zod' || nodeBuiltin(t) || inside('jobs')(t))).toEqual([]);
  // The template `coremachine init` copies is held to the same rule.
  expect(
    offending(
      'templates/app/src',
      (t) => PUBLIC_ENTRY_POINTS.includes(t) || ['zod', '@azure/functions'].includes(t) || nodeBuiltin(t) || inside('templates/app/src')(t),
    ),
  ).toEqual([]);
});

test("functions/index.ts is the app's entry point as any app writes it: registerCoreMachine with jobs/index.ts", () => {
  expect(importsOf('functions/index.ts').sort()).toEqual(['@azure/functions', 'coremachine/azure-functions', 'jobs'].sort());
  // Nothing else in the engine reaches up to the example jobs or to the public entry points.
  for (const dir of ['core', 'functions', 'models']) {
    expect(
      offending(dir, (t) => !inside('jobs')(t) && !inside('package')(t) && !PUBLIC_ENTRY_POINTS.includes(t)).filter(
        (line) => !line.startsWith('functions/index.ts'),
      ),
    ).toEqual([]);
  }
});

test('core/ never imports the Functions SDK, functions/ or bin/', () => {
  expect(offending('core', (t) => t !== '@azure/functions' && !inside('functions')(t) && !inside('bin')(t))).toEqual([]);
});

test('the transports never import the engine', () => {
  expect(offending('core/transport', (t) => !inside('core/engine')(t) && t !== 'core/janitor' && t !== 'core/worker')).toEqual([]);
});

/** Imports that bring values (not `import type`): what can make control run back up at runtime. */
function valueImportsOf(file: string): string[] {
  const text = readFileSync(path.join(root, file), 'utf8');
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^'"]*?from\s+'([^']+)'/gm)].map((m) => m[1] ?? '');
  return specifiers.map((spec) => (spec.startsWith('.') ? path.relative(root, path.resolve(root, path.dirname(file), spec)) : spec));
}

/**
 * The engine runs downhill: host → CoreMachine → the steps that commit (core/engine/commit.ts, the
 * only caller of UnitOfWork.run) → the unit of work (plumbing: outbox, transitions, aborts) → the
 * stage checks the commit called for, run by commit.ts afterwards. The steps that run inside a
 * transaction return what follows their commit as data and never commit themselves.
 */
const IN_TRANSACTION_STEPS = [
  'after-commit',
  'control',
  'dead-letters',
  'deadlines',
  'signal-stage',
  'stage-advance',
  'stage-check',
  'stage-results',
  'stage-start',
  'task-outcomes',
].map((name) => `core/engine/${name}.ts`);

test('only core/engine/commit.ts runs a unit of work; everything else commits through it', () => {
  const callers = sourceFiles('core').filter((file) => /\b(?:unitOfWork|uow)\.run\(/.test(readFileSync(path.join(root, file), 'utf8')));
  expect(callers).toEqual(['core/engine/commit.ts']);
});

test('steps inside a transaction never commit, never reach back up to the engine, and return their after-commit work as data', () => {
  const upward = new Set(['core/engine/commit', 'core/engine/unit-of-work', 'core/engine/core-machine', 'core/janitor', 'core/worker']);
  const found = IN_TRANSACTION_STEPS.flatMap((file) =>
    valueImportsOf(file)
      .filter((target) => upward.has(target))
      .map((target) => `${file} → ${target}`),
  );
  expect(found).toEqual([]);
  // No shared bag to push into: what follows a commit is returned (AfterCommit), not pushed.
  for (const file of [...IN_TRANSACTION_STEPS, 'core/janitor.ts'])
    expect(readFileSync(path.join(root, file), 'utf8')).not.toMatch(/\b\w+\.(events|stageChecks|abortAfterCommit)\??\.push\(/);
});

test('the unit of work is plumbing: it calls nothing that commits (no stage check, no engine)', () => {
  const allowed = new Set(['core/engine/after-commit', 'core/db/pool', 'core/telemetry']);
  expect(valueImportsOf('core/engine/unit-of-work.ts').filter((target) => !allowed.has(target))).toEqual([]);
  expect(valueImportsOf('core/engine/commit.ts').filter((target) => target === 'core/engine/core-machine')).toEqual([]);
});
