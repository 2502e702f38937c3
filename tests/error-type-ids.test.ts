/**
 * One convention for error type ids, the `type` of every recorded or returned error
 * (`{error: {type, message}}`): the name of the error class that raised it (TaskFailure, which
 * handlers throw, included), and for a reason recorded without an exception (a cancel, a dead
 * letter, a lost host) a PascalCase name ending in "Error" like every engine class. A type id found
 * in a job record, an API answer or a log line names the code that raised it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..');
const CONVENTION = /^[A-Z][A-Za-z0-9]*Error$/;

function sources(dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'data' ? [] : sources(relative);
    return entry.name.endsWith('.ts') ? [relative] : [];
  });
}

const files = ['core', 'functions', 'bin', 'models', 'jobs'].flatMap(sources);
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

test('every error class is recorded under its own class name', () => {
  const mismatched: string[] = [];
  let classes = 0;
  for (const file of files) {
    for (const match of read(file).matchAll(/class (\w+) extends \w+ \{[^}]*?readonly type(?:: string)? = '(\w+)'/g)) {
      classes++;
      if (match[1] !== match[2]) mismatched.push(`${file}: class ${match[1]} has type '${match[2]}'`);
    }
  }
  expect(classes).toBeGreaterThan(15);
  expect(mismatched).toEqual([]);
});

test('every error type id written in the code follows the convention', () => {
  const patterns = [
    /readonly type(?:: string)? = '(\w+)'/g,
    /error: \{ type: '(\w+)'/g,
    /(?:failure|error|shape)\b[^\n]{0,40}\{ type: '(\w+)'/g,
    /new HttpRefusal\(\d+, '(\w+)'/g,
    /new ApiError\(\w+, \{ type: '(\w+)'/g,
    /errorBox\(\{ type: '(\w+)'/g,
    /jsonb_build_object\('type', '(\w+)'/g,
    /\.name = '(\w+)'/g,
    /type: 'HostLostError'|type: '(\w+)',\n\s+message: `lease/g,
  ];
  const found = new Map<string, string>();
  for (const file of files) {
    if (file.endsWith('job-events.ts') || file.endsWith('job-event.ts')) continue; // job *event* types (JobCompleted…), not errors
    const text = read(file);
    for (const pattern of patterns) for (const match of text.matchAll(pattern)) if (match[1]) found.set(match[1], file);
  }
  const errorClasses = new Set(files.flatMap((file) => [...read(file).matchAll(/class (\w+) extends \w*Error\b/g)].map((m) => m[1])));
  expect(found.size).toBeGreaterThan(25);
  expect([...found].filter(([id]) => !CONVENTION.test(id) && !errorClasses.has(id)).map(([id, file]) => `${id} (${file})`)).toEqual([]);
});
