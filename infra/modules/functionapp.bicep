// The Functions app on Flex Consumption (FC1), Node 22, system-assigned identity, integrated with
// the VNet (network.bicep) so that it reaches PostgreSQL through its private endpoint.
// Flex Consumption takes the runtime from functionAppConfig and rejects the FUNCTIONS_WORKER_RUNTIME
// and FUNCTIONS_EXTENSION_VERSION app settings, so neither appears below.
param location string
param tags object
param name string
param planName string
param storageAccountName string
param deploymentContainerName string
param payloadContainerName string
param applicationInsightsName string
param serviceBusFullyQualifiedNamespace string
param postgresHost string
param postgresDatabase string
@description('5432 straight to the server, 6432 through its built-in PgBouncer.')
param postgresPort int = 5432
@description('PG_POOL_MAX: connections per instance, from the database profile\'s connection budget.')
param poolMax int = 2
@allowed(['on', 'off'])
param preparedStatements string = 'on'
@minValue(40)
@maxValue(1000)
@description('Most on-demand instances per scale group (Flex Consumption: 40 to 1000), from the database profile\'s budget.')
param maximumInstanceCount int = 40
@description('Always-ready instances, `{ name, instanceCount }` per scale group (`http`, `function:<name>`); empty = every group scales from zero.')
param alwaysReady array = []
param instanceMemoryMB int = 2048
@description('Subnet (delegated to Microsoft.App/environments) the app integrates with.')
param virtualNetworkSubnetId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

// No password: the app logs in as its managed identity's database role, named after the app and
// created by infra/hooks/postprovision.sh, with an Entra access token per connection
// (DATABASE_AUTH=entra, core/db/entra-token.ts). sslmode=require: Azure PostgreSQL only accepts TLS.
// postgresHost is the server's usual FQDN: inside the VNet it resolves to the private endpoint.
var databaseUrl = 'postgres://${uriComponent(name)}@${postgresHost}:${postgresPort}/${postgresDatabase}?sslmode=require'

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the resource to deploy service `api` (azure.yaml) by this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Regional VNet integration. Flex Consumption routes all outbound traffic through the VNet, so
    // there is no vnetRouteAllEnabled to set ("Route All isn't needed"):
    // https://learn.microsoft.com/azure/azure-functions/functions-networking-options#outbound-ip-restrictions
    // https://learn.microsoft.com/azure/templates/microsoft.web/sites (virtualNetworkSubnetId)
    virtualNetworkSubnetId: virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        // Identity-based host storage: no account key anywhere.
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        // The connection string only says where telemetry goes: its instrumentation key is not a
        // secret (https://learn.microsoft.com/azure/azure-monitor/app/connection-strings), and with
        // local authentication off (monitoring.bicep) ingestion needs an Entra token of the app's
        // identity (Monitoring Metrics Publisher, role-assignments.bicep). Authorization=AAD is the
        // value for a system-assigned identity:
        // https://learn.microsoft.com/azure/azure-functions/functions-app-settings#applicationinsights_authentication_string
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: applicationInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
        // Read by the Service Bus triggers (connection: 'ServiceBusConnection') and by
        // createServiceBusTransportFromEnv: one setting for both directions.
        { name: 'ServiceBusConnection__fullyQualifiedNamespace', value: serviceBusFullyQualifiedNamespace }
        { name: 'DATABASE_URL', value: databaseUrl }
        { name: 'DATABASE_AUTH', value: 'entra' }
        // The connection budget (main.bicep databaseProfiles, core/deployment-budget.ts): scale groups ×
        // instances × PG_POOL_MAX stays within the server's (or PgBouncer's) limit.
        { name: 'PG_POOL_MAX', value: string(poolMax) }
        // Waiting longer than this for a pooled connection is a transient fault: the message is rescheduled.
        { name: 'PG_CONNECT_TIMEOUT_MS', value: '10000' }
        { name: 'COREMACHINE_PREPARED_STATEMENTS', value: preparedStatements }
        // The janitor timer trigger's NCRONTAB schedule (functions/timer-janitor.ts).
        { name: 'JANITOR_SCHEDULE', value: '*/20 * * * * *' }
        // The payload store: large values in blobs of the same account, reached with the app's
        // identity (Storage Blob Data Owner on the account, role-assignments.bicep).
        { name: 'COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL', value: storage.properties.primaryEndpoints.blob }
        { name: 'COREMACHINE_PAYLOAD_CONTAINER', value: payloadContainerName }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      // maximumInstanceCount bounds each scale group's on-demand instances; alwaysReady instances are
      // kept per group on top of them (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#always-ready-instances,
      // https://github.com/Azure/azure-rest-api-specs/pull/45083).
      scaleAndConcurrency: {
        alwaysReady: alwaysReady
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // Node 22: GA on Flex Consumption (the Functions stacks API lists FC1 with runtime node 22,
      // end of life 2027-04-30, as captured in https://github.com/Azure/azure-powershell/blob/main/src/Functions/Functions.Autorest/custom/FunctionsStackFlexData/EastAsia/node.json;
      // GA announced in https://github.com/Azure/azure-functions-nodejs-library/issues/252). Node 20's
      // support ended 2026-04-30; Node 24 was listed as a preview on Azure Functions
      // (https://releaserun.com/?p=1522, copied from learn.microsoft.com/azure/azure-functions/supported-languages),
      // so 22 is the newest major this could confirm as GA on Flex. .ci/run pins the same major.
      runtime: {
        name: 'node'
        version: '22'
      }
    }
  }
}

// No FTP and no basic-auth SCM publishing: azd deploys with an Entra token.
// https://learn.microsoft.com/azure/templates/microsoft.web/sites/basicpublishingcredentialspolicies-ftp
// https://learn.microsoft.com/azure/templates/microsoft.web/sites/basicpublishingcredentialspolicies-scm
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
