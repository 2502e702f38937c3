/**
 * The documentation's code compiles and its links land.
 *
 * Samples. Every ```ts or ```typescript block of README.md, docs/*.md and bench/README.md is a module of its own,
 * written as a user of the package writes it: it imports from 'coremachine', 'coremachine/azure-functions' or
 * 'coremachine/testing' (mapped to package/index.ts, package/azure-functions.ts and package/testing.ts), from the
 * package's dependencies (zod, @azure/…) and from node: modules — never from the repository's own folders. Each is
 * written to node_modules/.cache/docs-samples/ (so imports resolve from the repository's node_modules) and all are
 * type-checked in one ts.createProgram with the compiler options of tsconfig.json. An error is reported at its line
 * in the Markdown. A sample that imports an entry point whose file does not exist yet is skipped with a notice.
 *
 * An HTML comment on the line right before the fence (invisible on the rendered page) may say more:
 *
 *   <!-- sample: copy of jobs/hello-world.ts -->
 *       The block is that file of the repository, word for word. The file is type-checked with the project by
 *       `npm run typecheck`, so the copy is compared, not compiled again.
 *
 *   <!-- sample: given
 *   const extract = defineTask({ … });
 *   declare const helloWorld: Registration['jobs'][number];
 *   -->
 *       A fragment: the lines after the first are put in front of the block before it is compiled. They declare what
 *       the fragment takes from elsewhere (tasks defined earlier on the page, a helper of the reader's own) and may use
 *       the block's own imports (imports are hoisted). The block keeps its imports, so a reader can copy it.
 *
 * Any other `<!-- sample:` comment, or one that is not right before a TypeScript block, fails the test.
 *
 * Links. Every relative link of those pages and CONTRIBUTING.md names a file that exists, and its #anchor a heading
 * of that page (GitHub's slugs: lower case, punctuation dropped, spaces to hyphens, -1, -2… for repeats).
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { spawnSync } from 'node:child_process';
import { JobSubmissionMessage } from '../models/messages';

const REPO = path.resolve(__dirname, '..');
const CACHE = path.join(REPO, 'node_modules', '.cache', 'docs-samples');

/** The package's entry points, as a user imports them, and the files that are them. */
const ENTRY_POINTS: Record<string, string> = {
  coremachine: 'package/index.ts',
  'coremachine/azure-functions': 'package/azure-functions.ts',
  'coremachine/testing': 'package/testing.ts',
};

const read = (file: string): string => fs.readFileSync(path.join(REPO, file), 'utf8');

function samplePages(): string[] {
  const docs = fs
    .readdirSync(path.join(REPO, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs, 'bench/README.md'];
}

interface Block {
  page: string;
  /** 1-based line of the opening fence. */
  fenceLine: number;
  lang: string;
  code: string;
  directive?: { line: number; kind: 'copy'; file: string } | { line: number; kind: 'given'; text: string };
}

interface Parsed {
  blocks: Block[];
  /** Markdown outside fenced blocks, one entry per line (fenced lines blanked), for headings and links. */
  prose: string[];
  problems: string[];
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)/;

function parsePage(page: string): Parsed {
  const lines = read(page).split('\n');
  const blocks: Block[] = [];
  const prose: string[] = [];
  const problems: string[] = [];
  const claimed = new Set<number>();
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] ?? '');
    if (!open) {
      prose.push(lines[i] ?? '');
      continue;
    }
    const marker = open[1] ?? '```';
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !(lines[j] ?? '').trimStart().startsWith(marker)) body.push(lines[j++] ?? '');
    const block: Block = { page, fenceLine: i + 1, lang: (open[2] ?? '').toLowerCase(), code: body.length ? `${body.join('\n')}\n` : '' };
    const directive = directiveBefore(lines, i);
    if (directive) {
      claimed.add(directive.line);
      if (directive.problem) problems.push(`${page}:${directive.line}: ${directive.problem}`);
      else if (block.lang !== 'ts' && block.lang !== 'typescript')
        problems.push(`${page}:${directive.line}: a sample directive must be right before a ts block`);
      else block.directive = directive.value;
    }
    blocks.push(block);
    for (let k = i; k <= j && k < lines.length; k++) prose.push('');
    i = j;
  }
  prose.forEach((line, index) => {
    if (line.includes('<!-- sample:') && !claimed.has(index + 1)) problems.push(`${page}:${index + 1}: a sample directive must be right before a ts block`);
  });
  return { blocks, prose, problems };
}

/** The `<!-- sample: … -->` comment that ends on the line before the fence at `fence` (0-based), if any. */
function directiveBefore(lines: string[], fence: number): { line: number; value?: Block['directive']; problem?: string } | undefined {
  const end = fence - 1;
  if (end < 0 || !(lines[end] ?? '').trimEnd().endsWith('-->')) return undefined;
  let start = end;
  while (start >= 0 && !(lines[start] ?? '').includes('<!--')) start--;
  if (start < 0 || !(lines[start] ?? '').trimStart().startsWith('<!-- sample:')) return undefined;
  const line = start + 1;
  const first = (lines[start] ?? '').trim();
  const copy = /^<!-- sample: copy of (\S+) -->$/.exec(first);
  if (copy && start === end) return { line, value: { line, kind: 'copy', file: copy[1] ?? '' } };
  if (first === '<!-- sample: given' && end > start && (lines[end] ?? '').trim() === '-->') {
    return { line, value: { line, kind: 'given', text: lines.slice(start + 1, end).join('\n') } };
  }
  return { line, problem: `unknown sample directive "${first}": use "<!-- sample: copy of <file> -->" or "<!-- sample: given" … "-->"` };
}

/** Packages a user's app may import in a sample: the package's entry points, its dependencies and node: modules. */
function importProblem(specifier: string): string | undefined {
  if (specifier in ENTRY_POINTS || specifier.startsWith('node:')) return undefined;
  const dependencies = Object.keys((JSON.parse(read('package.json')) as { dependencies?: Record<string, string> }).dependencies ?? {});
  if (dependencies.some((name) => specifier === name || specifier.startsWith(`${name}/`))) return undefined;
  return `imports '${specifier}': a sample imports 'coremachine' (or /azure-functions, /testing), the package's dependencies or node: modules, as a user's app does`;
}

const pages = samplePages();
const parsed = new Map(pages.map((page) => [page, parsePage(page)]));
const tsBlocks = [...parsed.values()].flatMap((p) => p.blocks).filter((b) => b.lang === 'ts' || b.lang === 'typescript');

test('every sample directive is one the test knows, right before a TypeScript block', () => {
  expect([...parsed.values()].flatMap((p) => p.problems)).toEqual([]);
});

test('a sample marked as a copy of a repository file is that file, word for word', () => {
  const copies = tsBlocks.filter((b) => b.directive?.kind === 'copy');
  expect(copies.length).toBeGreaterThan(0);
  for (const block of copies) {
    const file = block.directive?.kind === 'copy' ? block.directive.file : '';
    expect({ at: `${block.page}:${block.fenceLine}`, code: block.code }).toEqual({ at: `${block.page}:${block.fenceLine}`, code: read(file) });
  }
});

test('every TypeScript sample of the docs type-checks, importing what a user imports', () => {
  fs.rmSync(CACHE, { recursive: true, force: true });
  fs.mkdirSync(CACHE, { recursive: true });
  // Its own package scope, as a user's app is: nothing resolves through the repository's package.json.
  fs.writeFileSync(path.join(CACHE, 'package.json'), '{ "private": true, "type": "commonjs" }\n');

  const problems: string[] = [];
  const skipped: string[] = [];
  const files = new Map<string, { block: Block; givenLines: number }>();
  for (const block of tsBlocks.filter((b) => b.directive?.kind !== 'copy')) {
    const given = block.directive?.kind === 'given' ? `${block.directive.text}\n` : '';
    const at = `${block.page}:${block.fenceLine}`;
    const specifiers = ts.preProcessFile(block.code, true, true).importedFiles.map((f) => f.fileName);
    const wrong = specifiers.map(importProblem).filter((p): p is string => p !== undefined);
    if (wrong.length) {
      problems.push(...wrong.map((p) => `${at}: ${p}`));
      continue;
    }
    const missing = specifiers.filter((s) => s in ENTRY_POINTS && !fs.existsSync(path.join(REPO, ENTRY_POINTS[s] ?? '')));
    if (missing.length) {
      skipped.push(`${at} (${missing.map((s) => `${s} → ${ENTRY_POINTS[s]}`).join(', ')})`);
      continue;
    }
    const file = path.join(CACHE, `${block.page.replace(/[^A-Za-z0-9]+/g, '-')}-${block.fenceLine}.ts`);
    // `export {}` keeps a sample without imports a module, so samples never share globals.
    fs.writeFileSync(file, `${given}${block.code}export {};\n`);
    files.set(file, { block, givenLines: given ? given.split('\n').length - 1 : 0 });
  }
  if (skipped.length) {
    console.warn(
      `docs-samples: ${skipped.length} of ${tsBlocks.length} TypeScript samples import an entry point whose file does not exist yet; ` +
        `they are not type-checked:\n  ${skipped.join('\n  ')}`,
    );
  }

  if (files.size) {
    const config = ts.readConfigFile(path.join(REPO, 'tsconfig.json'), (file) => ts.sys.readFile(file));
    const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, REPO);
    const paths = Object.fromEntries(Object.entries(ENTRY_POINTS).map(([name, file]) => [name, [path.join(REPO, file)]]));
    const program = ts.createProgram([...files.keys()], { ...options, noEmit: true, paths });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      const sample = d.file && files.get(path.resolve(d.file.fileName));
      if (!d.file) problems.push(`compiler: ${message}`);
      if (!d.file || !sample) continue;
      const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
      const { block, givenLines } = sample;
      const where =
        line < givenLines && block.directive
          ? `${block.page}:${block.directive.line + 1 + line} (given)`
          : `${block.page}:${block.fenceLine + 1 + line - givenLines}`;
      problems.push(`${where}: ${message}`);
    }
  }
  expect(problems).toEqual([]);
  expect(files.size + skipped.length).toBe(tsBlocks.filter((b) => b.directive?.kind !== 'copy').length);
}, 180_000);

/** GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen. */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .trim()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(page: string): Set<string> {
  const prose = parsed.get(page)?.prose ?? parsePage(page).prose;
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const line of prose) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count ? `${base}-${count}` : base);
  }
  return anchors;
}

test('every relative link between the pages names a file that exists, and a heading of it', () => {
  const broken: string[] = [];
  let links = 0;
  for (const page of [...pages, 'CONTRIBUTING.md']) {
    // Code spans blanked (a link's text may wrap onto the next line, so the page is read whole).
    const text = (parsed.get(page)?.prose ?? parsePage(page).prose).join('\n').replace(/`[^`]*`/g, (code) => code.replace(/[^\n]/g, ' '));
    for (const match of text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
      const target = match[1] ?? '';
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      links++;
      const [file = '', anchor] = target.split('#');
      const resolved = file ? path.posix.normalize(path.posix.join(path.posix.dirname(page), file)) : page;
      const at = `${page}:${text.slice(0, match.index).split('\n').length}: ${target}`;
      if (!fs.existsSync(path.join(REPO, resolved))) broken.push(`${at} (no file ${resolved})`);
      else if (anchor !== undefined && !(resolved.endsWith('.md') && anchorsOf(resolved).has(anchor)))
        broken.push(`${at} (no heading #${anchor} in ${resolved})`);
    }
  }
  expect(links).toBeGreaterThan(50);
  expect(broken).toEqual([]);
});

test("README's two commands: the demo on the embedded default, and the test command .ci/run runs", () => {
  const readme = read('README.md');
  const section = readme.slice(readme.indexOf('\n## Two commands\n'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const commands = block
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean);
  expect(commands).toEqual(['npm install && npm run demo', 'npm test']);
  expect(read('.ci/run')).toMatch(/\nnpm test\n/);
});

test('README.md stays short: at most 250 lines, the rest in docs/', () => {
  expect(read('README.md').split('\n').length).toBeLessThanOrEqual(250);
});

/** python3 is on every machine this runs on (Debian); the Azure SDKs are not, so Python samples are parsed, not run. */
const otherBlocks = (lang: string) => [...parsed.values()].flatMap((p) => p.blocks).filter((b) => b.lang === lang);

test('the Python and .NET submission samples parse, and the bodies they send are valid submissions', () => {
  const python = otherBlocks('python');
  const csharp = otherBlocks('csharp');
  expect(python.length).toBeGreaterThan(0);
  expect(csharp.length).toBeGreaterThan(0);
  for (const block of python) {
    const checked = spawnSync('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())'], { input: block.code, encoding: 'utf8' });
    expect({ at: `${block.page}:${block.fenceLine}`, status: checked.status, stderr: checked.stderr }).toEqual({
      at: `${block.page}:${block.fenceLine}`,
      status: 0,
      stderr: '',
    });
    // The body literal is JSON as Python writes it: it must be what the submissions queue accepts.
    const body = /^\s*body = (\{.*\})$/m.exec(block.code)?.[1];
    expect(body).toBeDefined();
    expect(JobSubmissionMessage.safeParse(JSON.parse(body ?? 'null')).success).toBe(true);
  }
  for (const block of csharp) {
    // An anonymous object serialises with its member names as written: turn `new { a = 1 }` into JSON.
    const literal = /var body = (new \{.*\});$/m.exec(block.code)?.[1] ?? '';
    const json = literal.replace(/new \{/g, '{').replace(/(\w+) = /g, '"$1": ');
    expect(JobSubmissionMessage.safeParse(JSON.parse(json)).success).toBe(true);
  }
});
