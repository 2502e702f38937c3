// PostgreSQL 16; the SKU and the built-in PgBouncer come from the database profile in main.bicep.
// Microsoft Entra logins only, and no network path but the private endpoint (network.bicep) unless
// the deployer asks for one IP address to be let in (clientIpAddress).
param location string
param tags object
param name string
param databaseName string
@description('Object id of the Microsoft Entra principal that deploys (azd: AZURE_PRINCIPAL_ID); it becomes the server\'s only Entra administrator.')
param administratorObjectId string
@description('Its name: the user principal name of a user, the display name of a service principal. The administrator\'s database role has this name.')
param administratorName string
@allowed(['User', 'ServicePrincipal'])
param administratorType string
@description('One public IPv4 address let through the firewall, for the postprovision hook; empty keeps public network access disabled.')
param clientIpAddress string = ''
param skuName string = 'Standard_B1ms'
param skuTier string = 'Burstable'
// On Burstable, pgbouncer.enabled is hidden and PgBouncer is not available; max_client_conn takes
// 1–50000, default_pool_size 1–4950 (per user/database pair):
// https://learn.microsoft.com/azure/postgresql/flexible-server/server-parameters-table-pgbouncer
@description('Enable the built-in PgBouncer (port 6432, transaction mode). General Purpose and Memory Optimized tiers only.')
param pgbouncer bool = false
@description('Server connections PgBouncer keeps per user/database pair.')
param pgbouncerPoolSize int = 50
@description('Client connections PgBouncer accepts (the app instances\' pools together).')
param pgbouncerMaxClientConnections int = 5000

// A start = end = 0.0.0.0 rule would admit every Azure service of every tenant
// (https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-firewall-rules#programmatically-manage-firewall-rules),
// so that value never opens anything here; the preprovision hook refuses it outright.
var deployerIp = clientIpAddress == '0.0.0.0' ? '' : clientIpAddress

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: '16'
    // No administratorLogin/administratorLoginPassword: a server without password authentication has
    // no "default administrator login" (the API only takes one when switching password auth on:
    // ServerPropertiesForUpdate.administratorLogin in
    // https://github.com/Azure/azure-rest-api-specs/blob/main/specification/postgresql/resource-manager/Microsoft.DBforPostgreSQL/stable/2024-08-01/FlexibleServers.json),
    // and the portal's "Microsoft Entra authentication only" creates none
    // (https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-configure-sign-in-azure-ad-authentication).
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    storage: { storageSizeGB: 32 }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: { mode: 'Disabled' }
    // Public access mode (not VNet-injected) is what takes private endpoints; 'Disabled' leaves only
    // them. https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-networking-private-link
    network: { publicNetworkAccess: empty(deployerIp) ? 'Disabled' : 'Enabled' }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// The deployer, not the app, administers the server: the postprovision hook logs in as it to migrate
// and to create the app's own, unprivileged role. The resource name is the principal's object id.
// https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-manage-azure-ad-users
// Server changes run one after another (dependsOn): the server rejects concurrent ones.
resource deployerAdministrator 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: administratorObjectId
  properties: {
    principalName: administratorName
    principalType: administratorType
    tenantId: subscription().tenantId
  }
  dependsOn: [database]
}

// The only firewall rule there is: the deployer's one address, while it asks for it.
resource allowDeployerClient 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = if (!empty(deployerIp)) {
  parent: server
  name: 'AllowDeployerClient'
  properties: {
    startIpAddress: deployerIp
    endIpAddress: deployerIp
  }
  dependsOn: [deployerAdministrator]
}

// The built-in PgBouncer. Server parameters are set one after another (dependsOn): the server
// rejects concurrent configuration changes. Transaction mode: the engine keeps no session state,
// and max_prepared_statements lets PgBouncer carry the engine's named prepared statements.
var pgbouncerSettings = [
  { name: 'pgbouncer.enabled', value: 'true' }
  { name: 'pgbouncer.pool_mode', value: 'transaction' }
  { name: 'pgbouncer.default_pool_size', value: string(pgbouncerPoolSize) }
  { name: 'pgbouncer.max_client_conn', value: string(pgbouncerMaxClientConnections) }
  { name: 'pgbouncer.max_prepared_statements', value: '200' }
]

@batchSize(1)
resource pgbouncerConfig 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = [for setting in (pgbouncer ? pgbouncerSettings : []): {
  parent: server
  name: setting.name
  properties: {
    value: setting.value
    source: 'user-override'
  }
  dependsOn: [deployerAdministrator, allowDeployerClient]
}]

output id string = server.id
output name string = server.name
output host string = server.properties.fullyQualifiedDomainName
