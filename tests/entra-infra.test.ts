/**
 * The deployment logs in to PostgreSQL without a password: checks over the Bicep and azd files
 * that no compiler connects to core/db/entra-token.ts and core/config.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../core/config';

const root = path.resolve(__dirname, '..');
/** Source without `//` and `#` comment lines, so commented-out code cannot satisfy a check. */
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8').replace(/^\s*(\/\/|#).*$/gm, '');

test('the server accepts only Entra tokens, and its Entra administrator is the deployer, not the app identity', () => {
  const postgres = read('infra/modules/postgres.bicep');
  expect(postgres).toMatch(/activeDirectoryAuth:\s*'Enabled'/);
  expect(postgres).toMatch(/passwordAuth:\s*'Disabled'/);
  expect(postgres).toMatch(
    /flexibleServers\/administrators@[\s\S]*?name: administratorObjectId\n\s*properties: \{\s*principalName: administratorName\s*principalType: administratorType/,
  );
  const main = read('infra/main.bicep');
  expect(main).toMatch(/administratorObjectId:\s*principalId\n/);
  expect(main).toMatch(/administratorName:\s*principalName\n/);
  expect(main).not.toMatch(/postgres-entra-admin|principalName:\s*functionApp\.outputs\.name/);
  expect(existsSync(path.join(root, 'infra/modules/postgres-entra-admin.bicep'))).toBe(false);
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

test('azd runs the hook that migrates as the Entra administrator and gives the app role its rows', () => {
  expect(read('azure.yaml')).toMatch(/postprovision:\s*\n\s*posix:\s*\n\s*shell: sh\s*\n\s*run: \.\/infra\/hooks\/postprovision\.sh/);
  const hook = read('infra/hooks/postprovision.sh');
  // A Microsoft Entra access token for Azure Database for PostgreSQL is the password, for the migrator and psql alike.
  expect(hook).toMatch(/PGPASSWORD=\$\(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv\)/);
  expect(hook).toMatch(/PGUSER="\$POSTGRES_ADMIN_NAME"/);
  expect(hook).toMatch(/DATABASE_AUTH=password node dist\/bin\/coremachine\.js db migrate/);
  expect(hook).toMatch(/-f infra\/hooks\/grant-app-role\.sql/);
  expect(hook).not.toMatch(/POSTGRES_ADMIN_PASSWORD|POSTGRES_ADMIN_LOGIN/);
  expect(read('infra/hooks/grant-app-role.sql')).toMatch(/GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA coremachine TO coremachine_app/);
  // The outputs the hook reads exist, and the app's role is the user name in its DATABASE_URL (the app's name).
  const main = read('infra/main.bicep');
  for (const output of ['POSTGRES_HOST', 'POSTGRES_DATABASE', 'POSTGRES_ADMIN_NAME', 'POSTGRES_ADMIN_OBJECT_ID', 'POSTGRES_APP_OBJECT_ID']) {
    expect(main).toMatch(new RegExp(`output ${output} string`));
    expect(hook).toContain(output);
  }
  expect(main).toMatch(/output POSTGRES_APP_ROLE string = functionApp\.outputs\.name\n/);
  expect(read('infra/modules/functionapp.bicep')).toMatch(/output name string = site\.name\n/);
});

test('azd runs the predeploy check of job versions with the same login, and skips it with a notice where the server takes no connection', () => {
  expect(read('azure.yaml')).toMatch(
    /predeploy:\s*\n\s*posix:\s*\n\s*shell: sh\s*\n\s*run: \.\/infra\/hooks\/predeploy\.sh\s*\n\s*interactive: false\s*\n\s*continueOnError: false/,
  );
  const hook = read('infra/hooks/predeploy.sh');
  expect(hook).toMatch(/PGPASSWORD=\$\(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv\)/);
  expect(hook).toMatch(/DATABASE_AUTH=password node dist\/bin\/coremachine\.js db versions\s*$/);
  expect(hook).toMatch(/if \[ -z "\$\{CLIENT_IP_ADDRESS:-\}" \]; then[^]*?exit 0\s*\nfi/);
  const main = read('infra/main.bicep');
  for (const output of ['POSTGRES_HOST', 'POSTGRES_DATABASE', 'POSTGRES_ADMIN_NAME']) {
    expect(main).toMatch(new RegExp(`output ${output} string`));
    expect(hook).toContain(output);
  }
});
