import fs from 'node:fs';
import path from 'node:path';

/** The package root, whether running from TypeScript sources or from dist/. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'infra'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the CoreMachine package root above ${__dirname}`);
    dir = parent;
  }
}

export function migrationsDir(): string {
  return path.join(packageRoot(), 'infra', 'migrations');
}
