// Hosting plan + Linux Function App running the `handler` binary as a custom handler.
// Flex Consumption (FC1, default): runtime `custom` in functionAppConfig, package pulled from a blob
// container with the user-assigned identity. Elastic Premium / Dedicated: the package runs from the
// same container through WEBSITE_RUN_FROM_PACKAGE (set with the app settings in main.bicep), so no
// plan needs an Azure Files content share and the storage account can keep shared keys off.
// App settings are not set here: main.bicep owns them (one place, cross-checked by tests/infra_bicep.rs).

param location string
param tags object
param planName string
param functionAppName string
@allowed([
  'FlexConsumption'
  'ElasticPremium'
  'Dedicated'
])
param hostingPlan string
@description('Plan SKU for ElasticPremium (EP1..EP3) or Dedicated (B1, S1, P0v3, P1v3, ...); ignored on Flex.')
param planSkuName string
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int
param flexRuntimeVersion string
param identityId string
param deploymentContainerUrl string

var isFlex = hostingPlan == 'FlexConsumption'
var planSku = isFlex ? {
  name: 'FC1'
  tier: 'FlexConsumption'
} : (hostingPlan == 'ElasticPremium' ? {
  name: planSkuName
  tier: 'ElasticPremium'
} : {
  name: planSkuName
})

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: hostingPlan == 'ElasticPremium' ? 'elastic' : (isFlex ? 'functionapp' : 'linux')
  sku: planSku
  properties: {
    reserved: true
    maximumElasticWorkerCount: hostingPlan == 'ElasticPremium' ? maximumInstanceCount : null
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      alwaysOn: hostingPlan == 'Dedicated'
    }
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'custom'
        version: flexRuntimeVersion
      }
    } : null
  }
}

// Basic-auth publishing (FTP and Kudu/SCM) off: deploy.sh deploys with Entra ID tokens only.
resource ftpAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
