// Azure Bot resource (global) with the Microsoft Teams channel. New multi-tenant bots can no longer
// be created, so the bot is either SingleTenant (an Entra app registration in this tenant, created
// outside the template, its client secret in Key Vault) or UserAssignedMSI (the app's own
// user-assigned identity, no secret at all).

param tags object
param botName string
param displayName string
@allowed([
  'SingleTenant'
  'UserAssignedMSI'
])
param appType string
@description('Microsoft App ID: the app registration client id (SingleTenant) or the identity client id (UserAssignedMSI).')
param appId string
param identityId string
param messagingEndpoint string
@allowed([
  'F0'
  'S1'
])
param sku string

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: botName
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: sku
  }
  properties: {
    displayName: displayName
    endpoint: messagingEndpoint
    msaAppId: appId
    msaAppType: appType
    msaAppTenantId: tenant().tenantId
    msaAppMSIResourceId: appType == 'UserAssignedMSI' ? identityId : null
    publicNetworkAccess: 'Enabled'
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
    }
  }
}

output name string = bot.name
output endpoint string = bot.properties.endpoint
