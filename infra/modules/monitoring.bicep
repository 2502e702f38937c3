// Log Analytics workspace + workspace-based Application Insights (classic AI resources are retired).
param location string
param tags object
param logAnalyticsName string
param applicationInsightsName string

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Ingestion only with a Microsoft Entra token (the app's identity holds Monitoring Metrics
    // Publisher on this resource): the instrumentation key alone sends nothing.
    // https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
    DisableLocalAuth: true
  }
}

// The name only: the app reads the connection string from the resource itself, and no connection
// string leaves the deployment as an output.
output applicationInsightsName string = applicationInsights.name
