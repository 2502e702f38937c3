// CoreMachine on Azure: Functions (Flex Consumption) + Service Bus + PostgreSQL, deployed by `azd up`.
// Subscription scope so azd can create the resource group for an environment.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; seeds resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption and the PostgreSQL Flexible Server SKU of the chosen database profile.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Resource group name; empty means rg-<environmentName>.')
param resourceGroupName string = ''

// The deployer becomes the PostgreSQL server's Microsoft Entra administrator: the server has no
// password login at all. azd substitutes AZURE_PRINCIPAL_ID (object id) and AZURE_PRINCIPAL_TYPE
// (User or ServicePrincipal, azd 1.17.1 and later) for whoever `azd auth login` signed in:
// https://github.com/Azure/azure-dev/blob/main/cli/azd/docs/environment-variables.md
@minLength(1)
@description('Object id of the deploying user or service principal (azd: AZURE_PRINCIPAL_ID).')
param principalId string

@allowed(['User', 'ServicePrincipal'])
@description('Its type (azd: AZURE_PRINCIPAL_TYPE).')
param principalType string

@minLength(1)
@description('Its name: a user\'s user principal name, a service principal\'s display name (infra/hooks/preprovision.sh sets AZURE_PRINCIPAL_NAME from `az`). The administrator\'s database role has this name.')
param principalName string

@description('One public IPv4 address (yours) to let through the server\'s firewall so the postprovision hook can migrate from your machine; empty keeps the server reachable only through its private endpoint.')
param clientIpAddress string = ''

@description('Allow SAS keys (connection strings) on the Service Bus namespace. The app itself always uses its managed identity; enable this only to run tests/servicebus-live.test.ts against the namespace.')
param serviceBusAllowSas bool = false

@allowed(['Burstable', 'GeneralPurpose'])
@description('Database profile (see databaseProfiles below and docs/deploying.md "Scaling and connections"): Burstable = B2s, 1 connection per instance, no pooler (a first deployment); GeneralPurpose = D2ds_v5 with the built-in PgBouncer in transaction mode (production). `coremachine doctor` checks the chosen one before provisioning.')
param databaseProfile string = 'Burstable'

// Flex Consumption accepts 40 to 1000 (below 40 only as a preview in a few regions:
// https://github.com/MicrosoftDocs/azure-docs/pull/128255, https://github.com/Azure/azure-functions-host/issues/10523).
// It is the most on-demand instances of EACH scale group, not of the app:
// https://github.com/Azure/azure-rest-api-specs/pull/45083
@minValue(40)
@maxValue(1000)
@description('Most on-demand instances per Flex scale group (azd: COREMACHINE_MAXIMUM_INSTANCE_COUNT); the database profile lowers it to what its connection budget allows.')
param maximumInstanceCount int = 100

@minValue(0)
@maxValue(200)
@description('PG_POOL_MAX, connections per instance (azd: PG_POOL_MAX); 0 = the database profile\'s. `coremachine doctor` refuses a value the profile\'s server cannot take.')
param poolMax int = 0

// Always-ready instances stay running for a scale group whether it has work or not: no cold start
// for the first messages, billed as a baseline while idle. 0 = scale from zero (the default).
// Non-HTTP functions are named `function:<name>` (https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#set-always-ready-instance-counts);
// the names are the triggers' in functions/servicebus-triggers.ts (tests/registrations-vs-infra.test.ts checks them).
// They come on top of maximumInstanceCount (its on-demand maximum), so the budget counts them, and
// @maxValue keeps every profile within its budget even at the maximum (tests/budget.test.ts).
@minValue(0)
@maxValue(20)
@description('Always-ready instances of the job-message trigger (azd: COREMACHINE_ALWAYS_READY_JOBS).')
param alwaysReadyJobs int = 0

@minValue(0)
@maxValue(20)
@description('Always-ready instances of the task-message trigger (azd: COREMACHINE_ALWAYS_READY_TASKS).')
param alwaysReadyTasks int = 0

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

// The queue names and settings live here once. tests/infra-consistency.test.ts checks them against
// core/transport/transport.ts, host.json and infra/servicebus-emulator/Config.json.
var serviceBusQueueNames = [
  'coremachine-jobs'
  'coremachine-tasks'
  'coremachine-submissions'
]
var serviceBusQueueProperties = {
  // The Functions host renews the lock while a batch runs (host.json maxAutoLockRenewalDuration);
  // 5 minutes is the longest lock Service Bus grants, so a crashed worker's messages come back within it.
  lockDuration: 'PT5M'
  // After 10 deliveries a message is dead-lettered instead of looping; the janitor reports those.
  maxDeliveryCount: 10
  // messageIds are deterministic (jobId:sN, taskId:aN), so a re-send after a partial failure is dropped.
  requiresDuplicateDetection: true
  duplicateDetectionHistoryTimeWindow: 'PT10M'
  deadLetteringOnMessageExpiration: true
  defaultMessageTimeToLive: 'P14D'
}
// Job events out (models/job-event.ts): a topic with one default subscription; add your own
// subscriptions (with SQL filters on type/jobType) for each system that reacts to finished work.
var serviceBusEventsTopicName = 'coremachine-events'
var serviceBusEventsSubscriptionName = 'default'

// The connection budget, one formula for every profile (core/deployment-budget.ts; checked by
// tests/budget.test.ts against the scale groups the app registers, and by `coremachine doctor`
// before every `azd provision`). Flex scales each function group on its own: all HTTP functions are
// one group, every other function (each Service Bus trigger, the timer) its own, each group up to
// maximumInstanceCount on-demand instances plus its always-ready ones, each instance with a pool of
// poolMax connections (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#per-function-scaling):
//   Σ groups (instanceCap + alwaysReady) × poolMax ≤ maxConnections − reserved − headroom   (direct)
//   Σ groups (instanceCap + alwaysReady) × poolMax ≤ connectionLimit (pgbouncer.max_client_conn), and
//   pgbouncerPoolSize × pgbouncerPools ≤ maxConnections − reserved − headroom               (PgBouncer)
// With today's 8 groups (http, 3 queue triggers, 3 dead-letter triggers, the janitor timer):
//   Burstable:      8 × 40 × 1 = 320 (≤ 360 with 20 + 20 always ready) ≤ 429 − 15 − 10 = 404
//   GeneralPurpose: 8 × 100 × 4 = 3200 (≤ 3360) ≤ 5000 clients; 100 × 2 = 200 ≤ 859 − 15 − 10 = 834
// max_connections per SKU and the 15 Azure reserves: https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-limits
// The built-in PgBouncer runs on General Purpose and Memory Optimized only, max_client_conn 1–50000
// (default 5000), default_pool_size 1–4950 per user/database pair:
// https://learn.microsoft.com/azure/postgresql/flexible-server/server-parameters-table-pgbouncer
// headroom: migrations, `coremachine db`, the portal and an operator's psql, straight to port 5432.
// pgbouncerPools: user/database pairs through PgBouncer (the app's role, and one operator or tool).
var databaseProfiles = {
  Burstable: {
    skuName: 'Standard_B2s'
    skuTier: 'Burstable'
    maxConnections: 429
    reserved: 15
    headroom: 10
    poolMax: 1
    instanceCap: 40
    pgbouncer: false
    port: 5432
    connectionLimit: 429
    pgbouncerPoolSize: 0
    pgbouncerPools: 0
    preparedStatements: 'on'
  }
  GeneralPurpose: {
    skuName: 'Standard_D2ds_v5'
    skuTier: 'GeneralPurpose'
    maxConnections: 859
    reserved: 15
    headroom: 10
    poolMax: 4
    instanceCap: 100
    pgbouncer: true
    port: 6432
    connectionLimit: 5000
    pgbouncerPoolSize: 100
    pgbouncerPools: 2
    // Azure's PgBouncer tracks named prepared statements (pgbouncer.max_prepared_statements below).
    preparedStatements: 'on'
  }
}
var profile = databaseProfiles[databaseProfile]
var effectiveMaximumInstanceCount = min(maximumInstanceCount, profile.instanceCap)
var effectivePoolMax = poolMax > 0 ? poolMax : profile.poolMax
var alwaysReadyCandidates = [
  { name: 'function:jobs-queue', instanceCount: alwaysReadyJobs }
  { name: 'function:tasks-queue', instanceCount: alwaysReadyTasks }
]
var alwaysReady = filter(alwaysReadyCandidates, entry => entry.instanceCount > 0)

var databaseName = 'coremachine'
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var deploymentContainerName = 'app-package'
// The payload store's container (COREMACHINE_PAYLOAD_CONTAINER's default).
var payloadContainerName = 'coremachine-payloads'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'st${resourceToken}'
    deploymentContainerName: deploymentContainerName
    payloadContainerName: payloadContainerName
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'sb-${resourceToken}'
    queueNames: serviceBusQueueNames
    queueProperties: serviceBusQueueProperties
    eventsTopicName: serviceBusEventsTopicName
    eventsSubscriptionName: serviceBusEventsSubscriptionName
    disableLocalAuth: !serviceBusAllowSas
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'psql-${resourceToken}'
    databaseName: databaseName
    administratorObjectId: principalId
    administratorName: principalName
    administratorType: principalType
    clientIpAddress: clientIpAddress
    skuName: profile.skuName
    skuTier: profile.skuTier
    pgbouncer: profile.pgbouncer
    pgbouncerPoolSize: profile.pgbouncerPoolSize
    pgbouncerMaxClientConnections: profile.connectionLimit
  }
}

// After the server (its id), before the app (its subnet). The private endpoint's DNS record makes
// the server's FQDN resolve privately inside the VNet, for port 5432 and PgBouncer's 6432 alike.
module network 'modules/network.bicep' = {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'vnet-${resourceToken}'
    postgresServerId: postgres.outputs.id
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    payloadContainerName: storage.outputs.payloadContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    postgresHost: postgres.outputs.host
    postgresDatabase: databaseName
    postgresPort: profile.port
    poolMax: effectivePoolMax
    preparedStatements: profile.preparedStatements
    maximumInstanceCount: effectiveMaximumInstanceCount
    alwaysReady: alwaysReady
    instanceMemoryMB: instanceMemoryMB
    virtualNetworkSubnetId: network.outputs.functionsSubnetId
  }
}

module roles 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    principalId: functionApp.outputs.principalId
    serviceBusNamespaceName: serviceBus.outputs.name
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICEBUS_FULLY_QUALIFIED_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output POSTGRES_SERVER_NAME string = postgres.outputs.name
output POSTGRES_HOST string = postgres.outputs.host
output POSTGRES_DATABASE string = databaseName
// What infra/hooks/postprovision.sh needs: who administers the server (it logs in as that role and
// checks its token is that principal's), and the app's role to create (named after the app, mapped
// to its managed identity's object id; DATABASE_URL in functionapp.bicep uses the same name).
output POSTGRES_ADMIN_NAME string = principalName
output POSTGRES_ADMIN_OBJECT_ID string = principalId
output POSTGRES_APP_ROLE string = functionApp.outputs.name
output POSTGRES_APP_OBJECT_ID string = functionApp.outputs.principalId
output DATABASE_PROFILE string = databaseProfile
output MAXIMUM_INSTANCE_COUNT int = effectiveMaximumInstanceCount
