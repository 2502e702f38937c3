/**
 * The deployment logs in to PostgreSQL without a password: checks over the Bicep and azd files
 * that no compiler connects to core/db/entra-token.ts and core/config.ts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../core/config';

const root = path.resolve(__dirname, '..');
/** Source without `//` and `#` comment lines, so commented-out code cannot satisfy a check. */
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8').replace(/^\s*(\/\/|#).*$/gm, '');

test('the server accepts Entra tokens and the app identity is its Entra administrator', () => {
  const postgres = read('infra/modules/postgres.bicep');
  expect(postgres).toMatch(/activeDirectoryAuth:\s*'Enabled'/);
  const admin = read('infra/modules/postgres-entra-admin.bicep');
  expect(admin).toMatch(/flexibleServers\/administrators@/);
  expect(admin).toMatch(/principalType:\s*'ServicePrincipal'/);
  const main = read('infra/main.bicep');
  expect(main).toMatch(/principalId:\s*functionApp\.outputs\.principalId/);
  expect(main).toMatch(/principalName:\s*functionApp\.outputs\.name/);
});

test('DATABASE_URL carries no password and DATABASE_AUTH selects Entra tokens', () => {
  const app = read('infra/modules/functionapp.bicep');
  expect(app).not.toMatch(/postgresAdminPassword|adminPassword/);
  const url = /var databaseUrl = '([^']+)'/.exec(app)?.[1] ?? '';
  expect(url).toMatch(/^postgres:\/\/\$\{uriComponent\(name\)\}@\$\{postgresHost\}/);
  const auth = /\{ name: 'DATABASE_AUTH', value: '([^']+)' \}/.exec(app)?.[1] ?? '';
  // The value the Bicep sets must be one the app accepts, and the one that means tokens.
  expect(loadConfig({ DATABASE_AUTH: auth }).databaseAuth).toBe('entra');
});

test('azd runs the hook that migrates and grants the app role its rows', () => {
  expect(read('azure.yaml')).toMatch(/postprovision:\s*\n\s*posix:\s*\n\s*shell: sh\s*\n\s*run: \.\/infra\/hooks\/postprovision\.sh/);
  const hook = read('infra/hooks/postprovision.sh');
  expect(hook).toMatch(/coremachine\.js db migrate/);
  expect(hook).toMatch(/-f infra\/hooks\/grant-app-role\.sql/);
  expect(read('infra/hooks/grant-app-role.sql')).toMatch(/GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA coremachine TO :"app_role"/);
  // The output the hook reads exists.
  expect(read('infra/main.bicep')).toMatch(/output POSTGRES_APP_ROLE string/);
});
