// One storage account for the Functions host (AzureWebJobsStorage: leases, timers, keys), the
// deployment package and the app's own tables, queues and blobs. Shared-key access is disabled:
// every client (host, app, deploy script) authenticates with Microsoft Entra ID.
//
// Data-plane roles of the app's user-assigned identity, scoped to this account only:
//   Storage Blob Data Owner       - the host needs it (not Contributor) for AzureWebJobsStorage over an
//                                   identity: it creates containers and takes blob leases (timer
//                                   singleton locks, host id lock, key store); the app's blobs ride on it.
//   Storage Queue Data Contributor - queue triggers read/delete, outputs add messages, the host moves
//                                   failed messages to <queue>-poison.
//   Storage Table Data Contributor - the app's tables (checkpoints, mappings, runs, ...) and the host's
//                                   diagnostic events.

param location string
param tags object
param storageAccountName string
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param skuName string
param deploymentContainerName string
param queueNames array
param identityPrincipalId string
@description('Object id of whoever runs deploy.sh on a non-Flex plan (uploads the package blob); empty to skip.')
param deployerPrincipalId string
param deployerPrincipalType string
param grantDeployerPackageUpload bool

var blobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var queueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var tableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var identityRoles = [
  blobDataOwner
  queueDataContributor
  tableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The work queues and their poison queues exist from the start, so alerts and the admin page can
// watch `<queue>-poison` before the first failure creates it.
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for q in queueNames: {
  parent: queueService
  name: q
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource identityRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in identityRoles: {
  name: guid(storage.id, identityPrincipalId, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// Premium/Dedicated only: deploy.sh uploads the package blob that WEBSITE_RUN_FROM_PACKAGE points to.
resource deployerUpload 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployerPackageUpload && !empty(deployerPrincipalId)) {
  name: guid(deploymentContainer.id, deployerPrincipalId, blobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

output name string = storage.name
output blobEndpoint string = 'https://${storage.name}.blob.${environment().suffixes.storage}'
output queueEndpoint string = 'https://${storage.name}.queue.${environment().suffixes.storage}'
output tableEndpoint string = 'https://${storage.name}.table.${environment().suffixes.storage}'
output deploymentContainerUrl string = 'https://${storage.name}.blob.${environment().suffixes.storage}/${deploymentContainerName}'
