import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * SQL text lives in core/state/ (and the migrations) only: the engine reads as decisions, the
 * stores as SQL (issue 11, item 2). This reads every string and template literal of the app's
 * source and fails on one that looks like SQL.
 */
const ROOT = path.resolve(__dirname, '..');
const SCANNED = ['core', 'functions', 'bin', 'jobs', 'models', 'package'];
const STATE = path.join('core', 'state') + path.sep;
/** Files whose SQL is about the server, not CoreMachine's state, each with the reason. */
const ALLOWED: Record<string, string> = {
  [path.join('core', 'db', 'migrator.ts')]: 'applies the migrations and reads their version table',
  [path.join('core', 'db', 'embedded.ts')]: 'creates the database on an embedded server before any schema exists',
};
const SQL = [
  /\bSELECT\s/,
  /\bUPDATE\s+\S+\s+SET\b/,
  /\bINSERT\s+INTO\b/,
  /\bDELETE\s+FROM\b/,
  /\bSAVEPOINT\b/,
  /\bcoremachine\.(jobs|stages|tasks|outbox|events|dead_letters|janitor_runs|schedules|schedule_events|schema_migrations)\b/,
];

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(relative);
    return /\.(ts|js|mjs|cjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [relative] : [];
  });
}

/** The text of every string and template literal in a file (comments are not literals). */
function literalsOf(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) found.push(node.text);
    else if (ts.isTemplateExpression(node)) found.push([node.head.text, ...node.templateSpans.map((span) => span.literal.text)].join(' ${} '));
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function sqlOutsideState(): string[] {
  const offences: string[] = [];
  for (const file of SCANNED.flatMap(sourceFiles)) {
    if (file.startsWith(STATE) || file in ALLOWED) continue;
    for (const literal of literalsOf(file, readFileSync(path.join(ROOT, file), 'utf8'))) {
      if (SQL.some((pattern) => pattern.test(literal))) offences.push(`${file}: ${literal.replace(/\s+/g, ' ').slice(0, 100)}`);
    }
  }
  return offences;
}

test('no SQL text outside core/state/ and the migrations', () => {
  expect(sqlOutsideState()).toEqual([]);
});

test('the scan sees SQL where it is (so an empty result above means something)', () => {
  const stores = sourceFiles(path.join('core', 'state')).flatMap((file) => literalsOf(file, readFileSync(path.join(ROOT, file), 'utf8')));
  expect(stores.filter((literal) => SQL.some((pattern) => pattern.test(literal))).length).toBeGreaterThan(50);
  // A literal in a template with substitutions, and one in a comment that must not count.
  const sample = literalsOf('x.ts', '// SELECT * FROM coremachine.jobs\nconst q = `UPDATE coremachine.tasks SET x = ${1} WHERE y`;');
  expect(sample).toHaveLength(1);
  expect(SQL.some((pattern) => pattern.test(sample[0] ?? ''))).toBe(true);
});
