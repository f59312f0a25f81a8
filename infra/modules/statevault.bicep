// A second Key Vault for what the app itself writes: the refresh token of the admin's Teams app
// publish sign-in (TEAMS_APP_TOKEN_SECRET). The app's identity is Key Vault Secrets Officer here
// and only here, so it can never overwrite the configured secrets of the main vault (Moodle
// token, bot secret …), where it stays Key Vault Secrets User. RBAC mode, soft delete, no
// secret values in the template.

param location string
param tags object
param keyVaultName string
param identityPrincipalId string

var secretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: 'Enabled'
  }
}

resource appWritesItsState 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, secretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficer)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
