import { existsSync } from 'node:fs';
import path from 'node:path';
import { readAppManifest } from './app-registration';
import { buildAppArtifact, describeArtifact } from './artifact';
import { UsageError, type CliIo } from './io';
import type { LocalArgs } from './local-args';

/** Where `coremachine init` puts the app's Functions entry point. */
export const DEFAULT_FUNCTIONS_ENTRY = 'src/functions/index.ts';

/**
 * `coremachine package`: the app's deployment artifact, as this repository's `npm run package`
 * builds its own (bin/cli/artifact.ts): the entry point package.json "coremachine.functions" names
 * bundled with everything it imports into dist/deploy/, which azure.yaml deploys.
 */
export async function runPackage(args: LocalArgs, io: CliIo): Promise<number> {
  const appDir = io.cwd ?? process.cwd();
  if (!existsSync(path.join(appDir, 'package.json')) || !existsSync(path.join(appDir, 'host.json'))) {
    throw new UsageError(`${appDir} holds no package.json and host.json: run coremachine package in the app's folder`);
  }
  const manifest = readAppManifest(appDir);
  const entry = manifest?.functions ?? DEFAULT_FUNCTIONS_ENTRY;
  if (!existsSync(path.resolve(appDir, entry)))
    throw new UsageError(`the Functions entry point ${entry} does not exist (package.json "coremachine.functions")`);
  const dir = typeof args.values.out === 'string' ? path.resolve(appDir, args.values.out) : undefined;
  const tsconfig = existsSync(path.join(appDir, 'tsconfig.json')) ? 'tsconfig.json' : undefined;
  const artifact = await buildAppArtifact({
    appDir,
    entry,
    ...(tsconfig ? { tsconfig } : {}),
    ...(dir ? { dir } : {}),
    ...(manifest?.copy ? { copy: manifest.copy } : {}),
  });
  io.out(describeArtifact(artifact, appDir));
  return 0;
}
