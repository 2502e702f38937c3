// PostgreSQL 16; the SKU and the built-in PgBouncer come from the database profile in main.bicep.
param location string
param tags object
param name string
param databaseName string
param adminLogin string
@secure()
param adminPassword string
@description('Public IP allowed through the firewall, e.g. the deployer running the postprovision hook; empty adds no rule.')
param clientIpAddress string = ''
param skuName string = 'Standard_B1ms'
param skuTier string = 'Burstable'
@description('Enable the built-in PgBouncer (port 6432, transaction mode). General Purpose and Memory Optimized tiers only.')
param pgbouncer bool = false
@description('Server connections PgBouncer keeps per user/database pair.')
param pgbouncerPoolSize int = 50
@description('Client connections PgBouncer accepts (the app instances\' pools together).')
param pgbouncerMaxClientConnections int = 5000

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
    administratorLogin: adminLogin
    administratorLoginPassword: adminPassword
    // Entra for the app (an access token per connection, no stored secret); the password login
    // stays for the operator's migrations and as the break-glass administrator.
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Enabled'
      tenantId: subscription().tenantId
    }
    storage: { storageSizeGB: 32 }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: { mode: 'Disabled' }
    network: { publicNetworkAccess: 'Enabled' }
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

// Flex Consumption apps without VNet integration have no fixed outbound IPs, so the server admits
// Azure-internal traffic (the 0.0.0.0 rule) and relies on TLS + password. Use VNet integration and
// private access to close this. Created after the database: the server rejects concurrent changes.
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [database]
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
  dependsOn: [allowAzureServices]
}]

resource allowClient 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = if (!empty(clientIpAddress)) {
  parent: server
  name: 'AllowDeployerClient'
  properties: {
    startIpAddress: clientIpAddress
    endIpAddress: clientIpAddress
  }
  dependsOn: [allowAzureServices]
}

output name string = server.name
output host string = server.properties.fullyQualifiedDomainName
