// Makes the Function app's system-assigned managed identity a Microsoft Entra administrator of the
// PostgreSQL server. Azure creates a database role named after the app (principalName) that logs
// in with an access token of that identity, so no password is stored anywhere in the app.
// Its own module because the server's and the app's modules need each other's outputs otherwise.
// Table privileges on the coremachine schema come from infra/hooks/postprovision.sh (the schema is
// owned by the administrator login that runs the migrations).
param serverName string
param principalId string
param principalName string

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' existing = {
  name: serverName
}

resource appAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: principalId
  properties: {
    principalName: principalName
    principalType: 'ServicePrincipal'
    tenantId: subscription().tenantId
  }
}

output roleName string = principalName
