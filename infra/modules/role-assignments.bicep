// Data-plane roles for the function app's system-assigned identity. Built-in role definition ids:
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
param principalId string
param serviceBusNamespaceName string
param storageAccountName string
param applicationInsightsName string

var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Publishes all telemetry, not only metrics, to an Application Insights resource whose local
// authentication is off: https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Sender for the engine's fan-out and stage advance, Receiver for the two queue triggers.
resource serviceBusRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in [serviceBusDataSender, serviceBusDataReceiver]: {
    name: guid(namespace.id, principalId, roleId)
    scope: namespace
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    }
  }
]

// The host keeps leases and keys in blobs (AzureWebJobsStorage__accountName) and Flex Consumption
// pulls the deployment package from the same account.
resource storageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

// Telemetry from the Functions host and from the worker's Azure Monitor exporter, with the app's
// identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, functionapp.bicep).
resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}
