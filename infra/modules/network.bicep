// The app's private path to PostgreSQL: a VNet with one subnet the Function app integrates with and
// one for the server's private endpoint, and the private DNS zone that makes the server's usual host
// name resolve to the endpoint's private address inside the VNet (and only there).
// Its own module, after the server: the endpoint needs the server's id, the app needs the subnet's.
param location string
param tags object
param name string
@description('Resource id of the PostgreSQL Flexible Server the private endpoint connects to.')
param postgresServerId string
param addressPrefix string = '10.60.0.0/24'
// Flex Consumption: /27 is the minimum and the recommended size for one app (/26 for several); the
// subnet must be delegated to Microsoft.App/environments and used for nothing else.
// https://learn.microsoft.com/azure/azure-functions/functions-networking-options#subnets
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
param functionsSubnetPrefix string = '10.60.0.0/26'
param privateEndpointsSubnetPrefix string = '10.60.0.64/27'

var functionsSubnetName = 'snet-functions'
var privateEndpointsSubnetName = 'snet-private-endpoints'

// Network API 2024-05-01: subnets created with 2025-07-01 and later default to private
// (defaultOutboundAccess false), https://learn.microsoft.com/azure/virtual-network/ip-services/default-outbound-access
resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: [addressPrefix] }
    // Subnets inline: a redeployed VNet whose subnets array lacks a subnet tries to delete it.
    subnets: [
      {
        name: functionsSubnetName
        properties: {
          addressPrefix: functionsSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: { serviceName: 'Microsoft.App/environments' }
            }
          ]
        }
      }
      {
        name: privateEndpointsSubnetName
        properties: {
          addressPrefix: privateEndpointsSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }

  resource functionsSubnet 'subnets' existing = {
    name: functionsSubnetName
  }

  resource privateEndpointsSubnet 'subnets' existing = {
    name: privateEndpointsSubnetName
  }
}

// Zone name and group id for Microsoft.DBforPostgreSQL/flexibleServers:
// https://learn.microsoft.com/azure/private-link/private-endpoint-dns (postgresqlServer,
// privatelink.postgres.database.azure.com). With this zone linked, the server's own FQDN is a CNAME
// to <server>.privatelink.postgres.database.azure.com, so the app keeps the same host name, and so
// does PgBouncer on port 6432 (https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-networking-private-link).
// A Function app integrated with the VNet uses the private zones linked to it:
// https://learn.microsoft.com/azure/azure-functions/functions-networking-options#azure-dns-private-zones
resource privateDnsZone 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: 'privatelink.postgres.database.azure.com'
  location: 'global'
  tags: tags
}

resource privateDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: privateDnsZone
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: { id: vnet.id }
  }
}

// Private endpoints are available to Flexible Servers created with public access networking (not
// VNet-injected), together with firewall rules, Entra authentication and PgBouncer; the docs list no
// compute-tier restriction (https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-networking-private-link).
resource postgresPrivateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: '${name}-postgres-pe'
  location: location
  tags: tags
  properties: {
    subnet: { id: vnet::privateEndpointsSubnet.id }
    privateLinkServiceConnections: [
      {
        name: 'postgres'
        properties: {
          privateLinkServiceId: postgresServerId
          groupIds: ['postgresqlServer']
        }
      }
    ]
  }
}

// Writes the endpoint's A record into the zone (and removes it with the endpoint).
resource postgresDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: postgresPrivateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'postgres'
        properties: { privateDnsZoneId: privateDnsZone.id }
      }
    ]
  }
  dependsOn: [privateDnsZoneLink]
}

output functionsSubnetId string = vnet::functionsSubnet.id
