/**
 * `npm run package`: this repository's deployment artifact, the one thing `azd deploy` uploads
 * (azure.yaml, `dist: dist/deploy`, `remoteBuild: false`). The Functions app (functions/index.ts)
 * is bundled as any app's is by `coremachine package` (bin/cli/artifact.ts), with the example
 * job's sample texts beside it: dist/deploy/data/word-frequencies/ (jobs/word-frequencies.ts looks
 * beside the bundle). It lives under dist/ because dist/ is already ignored by git, eslint and tsc.
 */
import { packageRoot } from '../core/paths';
import { buildAppArtifact, describeArtifact, type Artifact } from '../bin/cli/artifact';

export { DEFAULT_ARTIFACT_DIR, ENTRY_FILE, EXTERNAL_MODULES, RESOLVED_ONLY, TELEMETRY_FILE, type Artifact } from '../bin/cli/artifact';

export interface ArtifactOptions {
  /** The repository (default: found from this file). */
  root?: string;
  /** Default: dist/deploy and dist/deploy.zip in the repository. Both are replaced. */
  dir?: string;
  zip?: string;
}

export function buildArtifact(options: ArtifactOptions = {}): Promise<Artifact> {
  return buildAppArtifact({
    appDir: options.root ?? packageRoot(),
    entry: 'functions/index.ts',
    tsconfig: 'tsconfig.build.json',
    ...(options.dir ? { dir: options.dir } : {}),
    ...(options.zip ? { zip: options.zip } : {}),
    copy: { 'data/word-frequencies': 'jobs/data/word-frequencies' },
  });
}

if (require.main === module) {
  buildArtifact()
    .then((artifact) => process.stdout.write(describeArtifact(artifact)))
    .catch((error: unknown) => {
      process.stderr.write(`npm run package failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    });
}
