/**
 * The deployment's security baseline (issue 21), checked on the Bicep, azd and hook files that no
 * compiler connects: the database is reachable only through its private endpoint (plus, on request,
 * the deployer's one IP), accepts only Microsoft Entra logins, is administered by the deployer and
 * not by the app, and the app's role holds rows and nothing else. The Azure rules behind each check
 * are cited where the Bicep uses them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..');
const raw = (file: string): string => readFileSync(path.join(root, file), 'utf8');

/** Source without `//` and `/* *\/` comments; string literals (URLs included) are kept. */
function bicep(file: string): string {
  const source = raw(file);
  let out = '';
  let inString = false;
  for (let i = 0; i < source.length; i++) {
    const char = source[i];
    if (inString) {
      out += char;
      if (char === '\\') out += source[++i] ?? '';
      else if (char === "'") inString = false;
    } else if (char === "'") {
      inString = true;
      out += char;
    } else if (source.startsWith('//', i)) {
      while (i < source.length && source[i] !== '\n') i++;
      out += '\n';
    } else if (source.startsWith('/*', i)) {
      i = source.indexOf('*/', i + 2) + 1;
    } else {
      out += char;
    }
  }
  return out;
}

/** The `{ ... }` block that opens at `open` (an index of '{'), braces included. */
function block(source: string, open: number): string {
  let depth = 0;
  for (let i = open; i < source.length; i++) {
    if (source[i] === '{') depth++;
    else if (source[i] === '}' && --depth === 0) return source.slice(open, i + 1);
  }
  throw new Error(`unclosed block at ${open}`);
}

/** The innermost `{ ... }` block that contains `index`. */
function enclosingBlock(source: string, index: number): string {
  let depth = 0;
  for (let i = index; i >= 0; i--) {
    if (source[i] === '}') depth++;
    else if (source[i] === '{' && depth-- === 0) return block(source, i);
  }
  throw new Error(`no block around ${index}`);
}

interface Declaration {
  file: string;
  symbol: string;
  type: string;
  condition: string | undefined;
  body: string;
}

/** Top-level and nested `resource` declarations with an API version (`existing` ones included). */
function resources(file: string): Declaration[] {
  const source = bicep(file);
  const found: Declaration[] = [];
  for (const match of source.matchAll(/^\s*resource (\w+) '([^'@]+)@[^']+'(?: existing)? = (?:\[for .*?: )?(?:if \((.+?)\) )?\{/gm)) {
    const [text, symbol = '', type = '', condition] = match;
    found.push({ file, symbol, type, condition, body: block(source, (match.index ?? 0) + text.length - 1) });
  }
  return found;
}

/** The params block of `module <symbol> '...' = {`. */
function moduleParams(file: string, symbol: string): string {
  const source = bicep(file);
  const match = new RegExp(`^module ${symbol} '[^']+' = \\{`, 'm').exec(source);
  if (!match) throw new Error(`module ${symbol} not found in ${file}`);
  const body = block(source, match.index + match[0].length - 1);
  const params = /\bparams: \{/.exec(body);
  if (!params) throw new Error(`module ${symbol} has no params`);
  return block(body, params.index + params[0].length - 1);
}

const bicepFiles = [
  'infra/main.bicep',
  ...readdirSync(path.join(root, 'infra/modules'))
    .filter((name) => name.endsWith('.bicep'))
    .map((name) => `infra/modules/${name}`),
];
const allResources = bicepFiles.flatMap(resources);
const ofType = (type: string): Declaration[] => allResources.filter((resource) => resource.type === type);
const only = (type: string): Declaration => {
  const matches = ofType(type);
  expect(matches.map((resource) => `${resource.file}:${resource.symbol}`)).toHaveLength(1);
  return matches[0] as Declaration;
};
const parameters = (JSON.parse(raw('infra/main.parameters.json')) as { parameters: Record<string, { value: string }> }).parameters;

const FIREWALL_RULE = 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules';
const SERVER = 'Microsoft.DBforPostgreSQL/flexibleServers';
/** The one place 0.0.0.0 may appear: the guard that keeps it from opening anything. */
const ZERO_GUARD = /^var (\w+) = clientIpAddress == '0\.0\.0\.0' \? '' : clientIpAddress$/m;

describe('the database network', () => {
  test("no firewall rule admits all of Azure: the only rule lets in the deployer's one address, when given", () => {
    for (const file of bicepFiles) {
      const source = bicep(file).replace(ZERO_GUARD, '');
      expect({ file, allowAll: /(^|[^\d.])0\.0\.0\.0(?![\d.])/.test(source) || /AllowAllAzure/i.test(source) }).toEqual({ file, allowAll: false });
    }
    const rule = only(FIREWALL_RULE);
    expect(rule.file).toBe('infra/modules/postgres.bicep');
    const source = bicep(rule.file);
    const ip = ZERO_GUARD.exec(source)?.[1] ?? 'clientIpAddress';
    expect(rule.condition).toBe(`!empty(${ip})`);
    expect(rule.body).toMatch(new RegExp(`startIpAddress: ${ip}\\n\\s*endIpAddress: ${ip}\\n`));
    expect(source).toMatch(/^param clientIpAddress string = ''$/m);
  });

  test('public network access is Disabled unless the deployer gives clientIpAddress, and depends on nothing else', () => {
    const server = ofType(SERVER).find((resource) => resource.file === 'infra/modules/postgres.bicep');
    const ip = ZERO_GUARD.exec(bicep('infra/modules/postgres.bicep'))?.[1] ?? 'clientIpAddress';
    const access = /publicNetworkAccess: ([^\n}]+?)\s*\}?\n/.exec(server?.body ?? '')?.[1];
    expect(access).toBe(`empty(${ip}) ? 'Disabled' : 'Enabled'`);
    expect(moduleParams('infra/main.bicep', 'postgres')).toMatch(/^\s*clientIpAddress: clientIpAddress$/m);
    expect(bicep('infra/main.bicep')).toMatch(/^param clientIpAddress string = ''$/m);
    expect(parameters.clientIpAddress?.value).toBe('${CLIENT_IP_ADDRESS=}');
  });

  test('the app reaches the server through a private endpoint in its VNet, resolved by the linked privatelink zone', () => {
    const network = 'infra/modules/network.bicep';
    const source = bicep(network);
    // The Flex Consumption integration subnet, delegated as Flex requires, is the one the app gets.
    const vnet = only('Microsoft.Network/virtualNetworks');
    expect(vnet.file).toBe(network);
    const subnetName = /^var (\w+) = 'snet-functions'$/m.exec(source)?.[1] ?? '';
    const subnet = enclosingBlock(vnet.body, vnet.body.indexOf(`name: ${subnetName}\n`));
    expect(subnet).toMatch(/serviceName: 'Microsoft\.App\/environments'/);
    expect(vnet.body).toMatch(new RegExp(`resource (\\w+) 'subnets' existing = \\{\\s*name: ${subnetName}\\s*\\}`));
    const subnetSymbol = new RegExp(`resource (\\w+) 'subnets' existing = \\{\\s*name: ${subnetName}`).exec(vnet.body)?.[1];
    expect(source).toMatch(new RegExp(`^output functionsSubnetId string = ${vnet.symbol}::${subnetSymbol}\\.id$`, 'm'));

    const endpoint = only('Microsoft.Network/privateEndpoints');
    expect(endpoint.body).toMatch(/privateLinkServiceId: postgresServerId\n\s*groupIds: \['postgresqlServer'\]/);
    const zone = only('Microsoft.Network/privateDnsZones');
    expect(zone.body).toMatch(/name: 'privatelink\.postgres\.database\.azure\.com'/);
    const link = only('Microsoft.Network/privateDnsZones/virtualNetworkLinks');
    expect(link.body).toMatch(new RegExp(`parent: ${zone.symbol}\\n`));
    expect(link.body).toMatch(new RegExp(`virtualNetwork: \\{ id: ${vnet.symbol}\\.id \\}`));
    const group = only('Microsoft.Network/privateEndpoints/privateDnsZoneGroups');
    expect(group.body).toMatch(new RegExp(`parent: ${endpoint.symbol}\\n`));
    expect(group.body).toMatch(new RegExp(`privateDnsZoneId: ${zone.symbol}\\.id`));

    expect(moduleParams('infra/main.bicep', 'network')).toMatch(/^\s*postgresServerId: postgres\.outputs\.id$/m);
    expect(bicep('infra/modules/postgres.bicep')).toMatch(/^output id string = server\.id$/m);
    expect(moduleParams('infra/main.bicep', 'functionApp')).toMatch(/^\s*virtualNetworkSubnetId: network\.outputs\.functionsSubnetId$/m);
    const site = ofType('Microsoft.Web/sites').find((resource) => resource.file === 'infra/modules/functionapp.bicep');
    expect(site?.body).toMatch(/^\s{4}virtualNetworkSubnetId: virtualNetworkSubnetId$/m);
  });
});

describe('who may log in to the database', () => {
  const postgres = bicep('infra/modules/postgres.bicep');

  test('password authentication is off, Entra authentication on, and no administrator password exists anywhere', () => {
    const server = ofType(SERVER).find((resource) => resource.file === 'infra/modules/postgres.bicep');
    expect(server?.body).toMatch(/authConfig: \{\s*activeDirectoryAuth: 'Enabled'\s*passwordAuth: 'Disabled'/);
    expect(server?.body).not.toMatch(/administratorLogin/);
    for (const file of bicepFiles) expect({ file, secure: /@secure\(\)/.test(bicep(file)) }).toEqual({ file, secure: false });
    expect(JSON.stringify(parameters)).not.toMatch(/PASSWORD|ADMIN_LOGIN/i);
    expect(postgres).not.toMatch(/param admin(Login|Password)\b/);
  });

  test("the Entra administrator is the deployer (azd's principal), not the app's identity", () => {
    const admin = only('Microsoft.DBforPostgreSQL/flexibleServers/administrators');
    expect(admin.file).toBe('infra/modules/postgres.bicep');
    expect(admin.body).toMatch(/^\s*name: administratorObjectId$/m);
    expect(admin.body).toMatch(/principalName: administratorName\n\s*principalType: administratorType\n/);
    const params = moduleParams('infra/main.bicep', 'postgres');
    expect(params).toMatch(/^\s*administratorObjectId: principalId$/m);
    expect(params).toMatch(/^\s*administratorName: principalName$/m);
    expect(params).toMatch(/^\s*administratorType: principalType$/m);
    expect(params).not.toMatch(/functionApp\./);
    const main = bicep('infra/main.bicep');
    expect(main).toMatch(/@allowed\(\['User', 'ServicePrincipal'\]\)\n(@description\('[^\n]*'\)\n)?param principalType string$/m);
    expect(parameters.principalId?.value).toBe('${AZURE_PRINCIPAL_ID}');
    expect(parameters.principalType?.value).toBe('${AZURE_PRINCIPAL_TYPE}');
    expect(parameters.principalName?.value).toBe('${AZURE_PRINCIPAL_NAME}');
    // The name comes from the preprovision hook, which azd runs before provisioning.
    expect(raw('azure.yaml')).toMatch(/preprovision:\s*\n\s*posix:\s*\n\s*shell: sh\s*\n\s*run: \.\/infra\/hooks\/preprovision\.sh/);
    expect(raw('infra/hooks/preprovision.sh')).toMatch(/azd env set AZURE_PRINCIPAL_NAME "\$name"/);
  });
});

describe('the Function app', () => {
  const functionApp = 'infra/modules/functionapp.bicep';

  test('FTP and basic-auth SCM publishing are off', () => {
    const policies = ofType('Microsoft.Web/sites/basicPublishingCredentialsPolicies');
    const site = ofType('Microsoft.Web/sites').find((resource) => resource.file === functionApp);
    expect(policies.map((policy) => /name: '(\w+)'/.exec(policy.body)?.[1]).sort()).toEqual(['ftp', 'scm']);
    for (const policy of policies) {
      expect(policy.file).toBe(functionApp);
      expect(policy.body).toMatch(new RegExp(`parent: ${site?.symbol ?? '-'}\\n`));
      expect(policy.body).toMatch(/properties: \{\s*allow: false\s*\}/);
    }
  });

  test("Application Insights takes only Entra-authenticated telemetry, which the app's identity may publish", () => {
    const components = ofType('Microsoft.Insights/components').find((resource) => resource.file === 'infra/modules/monitoring.bicep');
    expect(components?.body).toMatch(/^\s*DisableLocalAuth: true$/m);
    expect(bicep(functionApp)).toContain("{ name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }");

    const roles = 'infra/modules/role-assignments.bicep';
    const publisher = /^var (\w+) = '3913510d-42f4-4e42-8a64-420c390055eb'$/m.exec(bicep(roles))?.[1];
    expect(publisher).toBeDefined();
    const insights = ofType('Microsoft.Insights/components').find((resource) => resource.file === roles);
    const assignment = ofType('Microsoft.Authorization/roleAssignments').find(
      (resource) => resource.file === roles && resource.body.includes(`'Microsoft.Authorization/roleDefinitions', ${publisher})`),
    );
    expect(assignment?.body).toMatch(new RegExp(`scope: ${insights?.symbol ?? '-'}\\n`));
    expect(assignment?.body).toMatch(/principalId: principalId\n/);
    const params = moduleParams('infra/main.bicep', 'roles');
    expect(params).toMatch(/^\s*principalId: functionApp\.outputs\.principalId$/m);
    expect(params).toMatch(/^\s*applicationInsightsName: monitoring\.outputs\.applicationInsightsName$/m);
  });

  test('no deployment output carries a connection string, a password or a secret', () => {
    for (const file of bicepFiles) {
      for (const [line = ''] of bicep(file).matchAll(/^output .+$/gm)) {
        expect({ file, line, leaks: /connection_?string|password|secret/i.test(line) }).toEqual({ file, line, leaks: false });
      }
    }
  });
});

describe('before provisioning', () => {
  test('azd runs the preflight first: the preprovision hook stops on `coremachine doctor` before it touches Azure', () => {
    expect(raw('azure.yaml')).toMatch(
      /preprovision:\s*\n\s*posix:\s*\n\s*shell: sh\s*\n\s*run: \.\/infra\/hooks\/preprovision\.sh\s*\n\s*interactive: false\s*\n\s*continueOnError: false/,
    );
    const hook = raw('infra/hooks/preprovision.sh');
    const commands = hook.split('\n').filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'));
    expect(commands.slice(0, 3)).toEqual(['set -eu', 'npm run build --silent', 'node dist/bin/coremachine.js doctor']);
    expect(hook.indexOf('coremachine.js doctor')).toBeLessThan(hook.indexOf('az '));
  });
});

/** SQL statements outside `DO $$ ... $$` blocks, without `--` comments, whitespace collapsed. */
function sqlStatements(file: string): string[] {
  return raw(file)
    .replace(/--.*$/gm, '')
    .replace(/\$\$[\s\S]*?\$\$/g, '$$…$$')
    .split(';')
    .map((statement) => statement.replace(/\s+/g, ' ').trim())
    .filter(Boolean);
}

describe("the app's database role", () => {
  test('the app logs in as an ordinary role made for its identity, a member of coremachine_app, which holds rows and nothing more', () => {
    const principal = raw('infra/hooks/create-app-principal.sql').replace(/--.*$/gm, '');
    const calls = [...principal.matchAll(/pgaadauth_create_principal\w*\(([^)]*)\)/g)].map((match) => match[0]);
    expect(calls).toEqual(["pgaadauth_create_principal_with_oid(app_role, app_object_id, 'service', false, false)"]);

    const grants = sqlStatements('infra/hooks/grant-app-role.sql').filter((statement) => /\bGRANT\b/i.test(statement) && !/\bREVOKE\b/i.test(statement));
    expect(grants.sort()).toEqual(
      [
        'GRANT USAGE ON SCHEMA coremachine TO coremachine_app',
        'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA coremachine TO coremachine_app',
        'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA coremachine TO coremachine_app',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO coremachine_app',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO coremachine_app',
        'GRANT coremachine_app TO :"app_role" WITH INHERIT TRUE',
      ].sort(),
    );
    const sql = raw('infra/hooks/grant-app-role.sql').replace(/--.*$/gm, '');
    expect([...sql.matchAll(/CREATE ROLE ([^;]+);/g)].map((match) => match[1])).toEqual(['coremachine_app NOLOGIN']);
    expect(sql).not.toMatch(/WITH (GRANT|ADMIN) OPTION|ALL PRIVILEGES|\bpublic\b/i);

    const hook = raw('infra/hooks/postprovision.sh');
    expect(hook).toMatch(/PGDATABASE=postgres psql [^\n]*\\\n[^\n]*-f infra\/hooks\/create-app-principal\.sql/);
    expect(hook).toMatch(/PGDATABASE="\$POSTGRES_DATABASE" psql [^\n]*-f infra\/hooks\/grant-app-role\.sql/);
  });

  test("the engine's SQL needs nothing beyond those row privileges (no DDL, TRUNCATE, table locks or COPY)", () => {
    // The migrator and the embedded server run as the deployer or locally, never as the app's role.
    const dirs = ['core/state', 'core/engine', 'core/transport', 'functions'];
    for (const dir of dirs) {
      for (const name of readdirSync(path.join(root, dir)).filter((file) => file.endsWith('.ts'))) {
        const source = raw(`${dir}/${name}`).replace(/\/\/.*$|\/\*[\s\S]*?\*\/|^\s*\*.*$/gm, '');
        // SQL here is written in capitals; comments are stripped above, so prose does not count.
        const ddl =
          /\b(TRUNCATE|LOCK TABLE|COPY \w|(CREATE|ALTER|DROP) (TABLE|INDEX|SCHEMA|FUNCTION|TRIGGER|VIEW|SEQUENCE|ROLE|EXTENSION|DATABASE)|SET ROLE|SECURITY DEFINER)\b/.exec(
            source,
          )?.[1];
        expect({ file: `${dir}/${name}`, ddl }).toEqual({ file: `${dir}/${name}`, ddl: undefined });
      }
    }
  });
});

describe('the Service Bus namespace', () => {
  test('takes no SAS keys unless the deployer opts in for the live test; the app holds exactly Data Sender and Data Receiver', () => {
    const main = bicep('infra/main.bicep');
    expect(main).toMatch(/param serviceBusAllowSas bool = false\n/);
    expect(main).toMatch(/disableLocalAuth: !serviceBusAllowSas\n/);
    expect(bicep('infra/modules/servicebus.bicep')).toMatch(/disableLocalAuth: disableLocalAuth\n/);
    const roles = bicep('infra/modules/role-assignments.bicep');
    // Built-in role ids: learn.microsoft.com/azure/role-based-access-control/built-in-roles/integration
    expect(roles).toContain("'69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'"); // Azure Service Bus Data Sender
    expect(roles).toContain("'4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'"); // Azure Service Bus Data Receiver
    expect(roles).not.toContain("'090c5cfd-751d-490a-894a-3ce6f1109419'"); // Azure Service Bus Data Owner
    expect(/for roleId in \[serviceBusDataSender, serviceBusDataReceiver\]/.test(roles)).toBe(true);
  });
});
