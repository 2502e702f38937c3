// The Functions host's storage (AzureWebJobsStorage), the Flex Consumption deployment container and
// the payload store's container (values too large for a PostgreSQL row: docs/payloads.md).
// Shared keys are off: the app reaches it with its managed identity (Storage Blob Data Owner).
param location string
param tags object
@minLength(3)
@maxLength(24)
param name string
param deploymentContainerName string
param payloadContainerName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }

  resource blobServices 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: { publicAccess: 'None' }
    }

    // Task results, task specs and finalize results over COREMACHINE_PAYLOAD_INLINE_MAX_BYTES. The
    // engine deletes them with their jobs (retention, DELETE) and sweeps the orphans of crashes.
    resource payloadContainer 'containers' = {
      name: payloadContainerName
      properties: { publicAccess: 'None' }
    }
  }
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output payloadContainerName string = payloadContainerName
