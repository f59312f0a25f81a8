// moodle-teams-bridge on Azure: one Linux Function App running the `handler` custom handler, its
// storage (identity-only), monitoring, Key Vault and the Azure Bot with the Teams channel.
// Deploy with infra/deploy.sh; parameters are documented in infra/README.md.
//
// Every app setting lives in `appSettings` / `platformSettings` below: tests/infra_bicep.rs checks
// that each setting the code reads (`handler settings --format json`) is set here, and that
// each one set here is read by the code or is a Functions platform setting.

targetScope = 'resourceGroup'

@description('Azure region of every resource except the bot (global). Must offer Flex Consumption when hostingPlan is FlexConsumption.')
param location string = resourceGroup().location

@description('Short name (letters, digits, hyphens) used to build every resource name.')
@minLength(2)
@maxLength(12)
param baseName string = 'mtb'

@description('Tags on every resource.')
param tags object = {
  app: 'moodle-teams-bridge'
}

// ---- hosting ----------------------------------------------------------------------------------

@description('FlexConsumption (default: pay per use, scales to zero, runs Linux custom handlers), ElasticPremium (always warm) or Dedicated (App Service plan).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
  'Dedicated'
])
param hostingPlan string = 'FlexConsumption'

@description('SKU for ElasticPremium (EP1, EP2, EP3) or Dedicated (B1, S1, P0v3, P1v3, ...). Ignored on FlexConsumption (always FC1).')
param planSkuName string = 'EP1'

@description('Flex Consumption: memory of one instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption: most instances the app scales out to (ElasticPremium: maximum elastic worker count).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption runtime version for name "custom". 1.0 is what public samples use; check with `az functionapp list-flexconsumption-runtimes`.')
param flexRuntimeVersion string = '1.0'

@description('Redundancy of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
])
param storageSku string = 'Standard_LRS'

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---- bot ----------------------------------------------------------------------------------------

@description('SingleTenant (app registration + client secret in Key Vault) or UserAssignedMSI (the app identity is the bot; no secret). Multi-tenant bots can no longer be created.')
@allowed([
  'SingleTenant'
  'UserAssignedMSI'
])
param botAppType string = 'SingleTenant'

@description('SingleTenant: client id of the bot app registration (required). UserAssignedMSI: leave empty (the identity client id is used).')
param botAppId string = ''

@description('Name shown for the bot in Teams.')
param botDisplayName string = 'Moodle'

@description('BOT_DEFAULT_LOCALE: language of answers when the user\'s locale is neither French nor English.')
@allowed([
  'fr'
  'en'
])
param botDefaultLocale string = 'fr'

@description('WEBHOOK_REPLAY_WINDOW_SECS: seconds a signed webhook\'s timestamp may be off from now (either way).')
@minValue(10)
@maxValue(3600)
param webhookReplayWindowSecs int = 300

@description('WEBHOOK_MAX_BODY_BYTES: largest notification accepted on /api/webhook, in bytes.')
@minValue(1024)
param webhookMaxBodyBytes int = 65536

@description('NOTIFY_SWEEP_SCHEDULE: six-field NCRONTAB schedule of NotifySweep (pull timer).')
param notifySweepSchedule string = '0 */30 * * * *'

@description('NOTIFY_SWEEP_COURSES: Moodle course ids NotifySweep reads, comma-separated (empty: off).')
param notifySweepCourses string = ''

@description('NOTIFY_DUE_WINDOW_HOURS: hours ahead an assignment counts as due soon for reminders.')
@minValue(1)
@maxValue(336)
param notifyDueWindowHours int = 48

@description('NOTIFY_RETENTION_DAYS: days notification delivery records are kept (at least 7, longer than the due window).')
@minValue(7)
@maxValue(3650)
param notifyRetentionDays int = 30

@description('BOT_DUE_SOON_DAYS: days ahead that "due soon" covers.')
@minValue(1)
param botDueSoonDays int = 7

@description('BOT_ANSWER_CACHE_SECS: seconds a user\'s Moodle answers are reused (0 disables).')
@minValue(0)
param botAnswerCacheSecs int = 30

@description('BOT_PARENT_LINKS_REPORT: id of the Moodle custom report (Roles source) the bot reads parent links from; empty = no answers for parents.')
param botParentLinksReport string = ''

@description('BOT_PARENT_ROLE: short name of the Moodle role that links a parent to a child (in the child\'s user context).')
param botParentRole string = 'parent'

@description('BOT_APP_RATE_PER_SEC: Bot Connector requests per second for the whole app (Teams allows 50 per app and tenant).')
@minValue(1)
param botAppRatePerSec int = 50

@description('Azure Bot pricing tier: F0 (free; Teams is a standard channel) or S1.')
@allowed([
  'F0'
  'S1'
])
param botSku string = 'F0'

// ---- Microsoft Graph (Entra users, Teams) --------------------------------------------------------

@description('GRAPH_AUTH: how the app gets its app-only Graph token. secret: client secret of the app registration graphClientId, in Key Vault (graph-client-secret). certificate: PEM certificate and key in Key Vault (graph-certificate, graph-certificate-key). managed-identity: the app\'s user-assigned identity (grant it the Graph app roles).')
@allowed([
  'secret'
  'certificate'
  'managed-identity'
])
param graphAuth string = 'secret'

@description('GRAPH_CLIENT_ID: client id of the app registration holding the Graph application permissions. Empty with secret/certificate: Graph features off.')
param graphClientId string = ''

@description('Overrides of the Entra → Moodle user sync settings (name → string value), e.g. {"ENTRA_SYNC_DELETE": "true", "ENTRA_CREATE_FILTER": "group:<object id>"}. Unset names keep the code\'s defaults below.')
param entraSettings object = {}

@description('GRAPH_IDENTITY_RU_PER_10S: identity resource units per 10 s the client paces itself to (Graph: 3500 below 50 users, 5000 up to 500, 8000 above).')
@minValue(1)
param graphIdentityRuPer10s int = 3500

// ---- app configuration (each maps to one app setting) --------------------------------------------

@description('MOODLE_URL: base URL of the Moodle site. Empty: Moodle features off (MOODLE_TOKEN is not referenced).')
param moodleUrl string = ''

@description('MOODLE_MAX_FORM_FIELDS: PHP max_input_vars of the Moodle site.')
@minValue(50)
param moodleMaxFormFields int = 1000

@description('MOODLE_TIMEOUT_SECS: timeout of one Moodle web-service call.')
@minValue(1)
param moodleTimeoutSecs int = 60

@description('MOODLE_ALLOW_INSECURE: accept an http:// moodleUrl (the token then crosses the network in clear text).')
param moodleAllowInsecure bool = false

@description('LDAP_URL: ldaps:// URL of the school directory. Empty: LDAP source off (LDAP_BIND_PASSWORD is not referenced).')
param ldapUrl string = ''

@description('LDAP_BIND_DN: DN the bridge binds as.')
param ldapBindDn string = ''

@description('SYNC_ENABLED: run the ENT/LDAP → Moodle sync on the SyncTimer schedule.')
param syncEnabled bool = false

@description('Overrides of the sync and LDAP settings (name → string value), e.g. {"LDAP_PEOPLE_BASE": "ou=people,dc=ent,dc=fr", "SYNC_REMOVAL": "suspend"}. Unset names keep the defaults below, which are the code\'s own defaults (see the README settings table).')
param syncSettings object = {}

@description('Moodle courses → Teams (needs the GRAPH_* settings): overrides of the TEAMS_* settings (name → string value), e.g. {"TEAMS_COURSES": "category", "TEAMS_COURSE_CATEGORIES": "4,7", "TEAMS_OWNER_ROLES": "editingteacher,teacher"}. Unset names keep the defaults below, the code\'s own (README settings table); TEAMS_COURSES=none (the default) creates no team.')
param teamsSettings object = {}

@description('SYNC_SCHEDULE: six-field NCRONTAB of the SyncTimer function (the host reads it too, as %SYNC_SCHEDULE%).')
param syncSchedule string = '0 */15 * * * *'

@description('LOG_LEVEL: tracing filter (error, warn, info, debug, trace or directives).')
param logLevel string = 'info'

@description('MAX_BODY_BYTES: largest request body accepted, in bytes.')
@minValue(1024)
param maxBodyBytes int = 262144

@description('STORE_CHECK_TIMEOUT_SECS: seconds a store check at start may take before the handler fails naming the endpoint.')
@minValue(1)
param storeCheckTimeoutSecs int = 5

@description('HTTP_READ_TIMEOUT_SECS: seconds a client has to send a request\'s headers and body.')
@minValue(1)
param httpReadTimeoutSecs int = 10

@description('HTTP_MAX_CONNECTIONS: most connections served at once; more wait in the listen backlog.')
@minValue(1)
param httpMaxConnections int = 512

@description('STORE_TABLE_PREFIX: prefix of the app table names (letters and digits).')
param storeTablePrefix string = 'bridge'

@description('PUBLIC_URL: public base URL of the app. Empty: https://<function app default host name>.')
param publicUrl string = ''

@description('Overrides of the Teams app package settings (name → string value), e.g. {"TEAMS_APP_NAME": "Moodle lycée", "TEAMS_APP_VERSION": "2.0.0"}. Unset names keep the code\'s defaults below (README settings table).')
param teamsAppSettings object = {}

@description('Client id of the Entra app registration App Service authentication signs admins in with (ManifestPublish, the admin page). On the registration: redirect URI https://<app>/.auth/login/aad/callback, ID tokens issued (no client secret is used: the sign-in returns an ID token), groupMembershipClaims SecurityGroup (the groups claim ADMIN_GROUP_IDS is checked against). Empty: no App Service authentication, so every admin call is refused.')
param authClientId string = ''

@description('ADMIN_GROUP_IDS: object ids (comma-separated) of the Entra groups whose members may call the admin functions (ManifestPublish). Empty: every admin call is refused. Needs App Service authentication (Microsoft provider) on the function app.')
param adminGroupIds string = ''

// ---- who deploys --------------------------------------------------------------------------------

@description('Object id of the user or service principal running deploy.sh: gets Key Vault Secrets Officer (to set secrets) and, off Flex, upload rights on the package container. Empty: grant nothing.')
param deployerPrincipalId string = ''

@description('Type of deployerPrincipalId.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

// ---- names ---------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, baseName)
var compactBase = toLower(replace(baseName, '-', ''))
var names = {
  identity: '${baseName}-id'
  storage: take('st${compactBase}${suffix}', 24)
  workspace: '${baseName}-logs'
  appInsights: '${baseName}-appi'
  keyVault: take('kv-${compactBase}-${suffix}', 24)
  stateVault: take('kvs-${compactBase}-${suffix}', 24)
  plan: '${baseName}-plan'
  functionApp: '${baseName}-${suffix}'
  bot: '${baseName}-bot-${suffix}'
}
var isFlex = hostingPlan == 'FlexConsumption'
var deploymentContainerName = 'app-package'
// Premium/Dedicated run the package from this blob (deploy.sh uploads it); Flex manages its own blob.
var packageBlobName = 'handler.zip'
var queueNames = [
  'sync-work'
  'sync-work-poison'
  'notify'
  'notify-poison'
]

// ---- resources -----------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    retentionInDays: logRetentionDays
    identityPrincipalId: identity.properties.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    storageAccountName: names.storage
    skuName: storageSku
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
    identityPrincipalId: identity.properties.principalId
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
    grantDeployerPackageUpload: !isFlex
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    keyVaultName: names.keyVault
    identityPrincipalId: identity.properties.principalId
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
  }
}

// The app's own writable secrets (the Teams app publish sign-in), apart from the configured ones.
module stateVault 'modules/statevault.bicep' = {
  name: 'statevault'
  params: {
    location: location
    tags: tags
    keyVaultName: names.stateVault
    identityPrincipalId: identity.properties.principalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: tags
    planName: names.plan
    functionAppName: names.functionApp
    hostingPlan: hostingPlan
    planSkuName: planSkuName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    flexRuntimeVersion: flexRuntimeVersion
    identityId: identity.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
  }
}

var hostName = functionApp.outputs.defaultHostName
var appUrl = 'https://${hostName}'
var botAppIdEffective = botAppType == 'UserAssignedMSI' ? identity.properties.clientId : botAppId

module bot 'modules/bot.bicep' = {
  name: 'bot'
  params: {
    tags: tags
    botName: names.bot
    displayName: botDisplayName
    appType: botAppType
    appId: botAppIdEffective
    identityId: identity.id
    messagingEndpoint: '${appUrl}/api/messages'
    sku: botSku
  }
}

// ---- app settings --------------------------------------------------------------------------------

// Key Vault reference (latest version, re-read by the platform within 24 h or on restart).
// deploy.sh makes sure each referenced secret exists before the package is published.
var kv = keyVault.outputs.uri
var secretRef = {
  moodleToken: '@Microsoft.KeyVault(SecretUri=${kv}secrets/moodle-token/)'
  botClientSecret: '@Microsoft.KeyVault(SecretUri=${kv}secrets/bot-client-secret/)'
  ldapBindPassword: '@Microsoft.KeyVault(SecretUri=${kv}secrets/ldap-bind-password/)'
  webhookSecret: '@Microsoft.KeyVault(SecretUri=${kv}secrets/webhook-secret/)'
  graphClientSecret: '@Microsoft.KeyVault(SecretUri=${kv}secrets/graph-client-secret/)'
  graphCertificate: '@Microsoft.KeyVault(SecretUri=${kv}secrets/graph-certificate/)'
  graphCertificateKey: '@Microsoft.KeyVault(SecretUri=${kv}secrets/graph-certificate-key/)'
}

// Graph is on with managed identity, or with an app registration for secret/certificate.
var graphEnabled = graphAuth == 'managed-identity' || !empty(graphClientId)

// The code's defaults for the sync and LDAP settings; `syncSettings` overrides any of them.
var syncDefaults = {
  LDAP_GROUPS_BASE: 'ou=groups,dc=ent,dc=example'
  LDAP_GROUPS_FILTER: '(objectClass=groupOfNames)'
  LDAP_GROUP_MEMBER_ATTRIBUTE: 'member'
  LDAP_GROUP_NAME_ATTRIBUTE: 'cn'
  LDAP_PAGE_SIZE: '500'
  LDAP_PEOPLE_BASE: 'ou=people,dc=ent,dc=example'
  LDAP_STAFF_BASE: 'ou=people,dc=ent,dc=example'
  LDAP_STAFF_FILTER: '(objectClass=ENTAuxNonEnsEtab)'
  LDAP_STARTTLS: 'false'
  LDAP_ALLOW_INSECURE: 'false'
  LDAP_STUDENTS_BASE: 'ou=people,dc=ent,dc=example'
  LDAP_STUDENTS_FILTER: '(objectClass=ENTEleve)'
  LDAP_TEACHERS_BASE: 'ou=people,dc=ent,dc=example'
  LDAP_TEACHERS_FILTER: '(objectClass=ENTAuxEnseignant)'
  LDAP_TIMEOUT_SECS: '30'
  LDAP_PARENTS_BASE: 'ou=people,dc=ent,dc=example'
  LDAP_PARENTS_FILTER: '(&(objectClass=ENTAuxPersRelEleve)(!(objectClass=ENTEleve))(!(objectClass=ENTAuxEnseignant))(!(objectClass=ENTAuxNonEnsEtab))(!(objectClass=ENTAuxNonEnsCollLoc)))'
  SYNC_PARENTS: 'false'
  SYNC_PARENT_ROLE: 'parent'
  SYNC_BATCH_SIZE: '500'
  SYNC_COHORT_ATTRIBUTE: 'ENTEleveClasses'
  SYNC_COHORT_PREFIX: 'ent_'
  SYNC_COHORT_SOURCE: 'attribute'
  SYNC_FAKE_EMAIL_DOMAIN: 'no-mail.invalid'
  SYNC_LEASE_SECS: '1800'
  SYNC_TOKEN_RECHECK_SECS: '3600'
  SYNC_MAP_CUSTOM: ''
  SYNC_MAP_DEPARTMENT: 'ENTPersonFonctions:last'
  SYNC_MAP_EMAIL: 'mail'
  SYNC_MAP_FIRSTNAME: 'givenName'
  SYNC_MAP_IDNUMBER: 'ENTPersonJointure:after$'
  SYNC_MAP_INSTITUTION: '-'
  SYNC_MAP_KEY: 'uid'
  SYNC_MAP_LASTNAME: 'sn'
  SYNC_MAP_USERNAME: 'ENTPersonLogin'
  SYNC_OVERLAP_SECS: '120'
  SYNC_REMOVAL: 'off'
  SYNC_REMOVAL_MAX_SHARE: '0.05'
  SYNC_ROLE_IDS: 'manager=1,coursecreator=2,editingteacher=3,teacher=4,student=5'
  SYNC_ROLE_RULES: 'ENTAuxEnsClasses|course|editingteacher|{school}${code}'
  SYNC_SOURCE: 'ldap'
  SYNC_SOURCE_FILE: ''
  SYNC_TRACE_LIMIT: '20000'
  SYNC_PROTECTED_USERS: ''
  SYNC_USER_AUTH: 'cas'
  SYNC_SUSPEND_ON_DELETION_DATE: 'true'
  SYNC_MANUAL_PASSWORD_MAIL: 'false'
  SYNC_LEAVER_MEMBERSHIPS: 'keep'
  SYNC_FULL_SCHEDULE: '0 0 2 * * *'
  SYNC_DELETION_DATE_ATTRIBUTE: 'ENTPersonDateSuppression'
  SYNC_DECLARED_DUPLICATES: 'skip'
  LDAP_STRUCTURES_BASE: 'ou=structures,dc=ent,dc=example'
  SYNC_SCHOOL_NAME_ATTRIBUTE: 'ENTStructureNomCourant'
  SYNC_WRITE_CONCURRENCY: '2'
}
var sync = union(syncDefaults, syncSettings)

// The code's defaults for the Teams app package (empty = derived or drawn by the code).
var teamsAppDefaults = {
  TEAMS_APP_ID: ''
  TEAMS_APP_VERSION: ''
  TEAMS_APP_NAME: 'Moodle'
  TEAMS_APP_FULL_NAME: 'Moodle for Microsoft Teams'
  TEAMS_APP_DEVELOPER: 'Moodle Teams Bridge'
  TEAMS_APP_ACCENT_COLOR: '#F98012'
  TEAMS_APP_COLOR_ICON: ''
  TEAMS_APP_OUTLINE_ICON: ''
  TEAMS_APP_SSO_RESOURCE: ''
  TEAMS_APP_PRIVACY_URL: ''
  TEAMS_APP_TERMS_URL: ''
  TEAMS_APP_AUTHORITY: 'https://login.microsoftonline.com/'
  TEAMS_APP_TENANT_ID: ''
  TEAMS_APP_PUBLISH_CLIENT_ID: ''
  TEAMS_APP_SERVICE_URL: 'https://smba.trafficmanager.net/teams/'
  TEAMS_APP_INSTALL_SCHEDULE: '0 30 * * * *'
}
var teamsApp = union(teamsAppDefaults, teamsAppSettings)

// The code's defaults for Moodle courses → Teams; `teamsSettings` overrides any of them.
var teamsDefaults = {
  TEAMS_COURSES: 'none'
  TEAMS_COURSE_IDS: ''
  TEAMS_COURSE_CATEGORIES: ''
  TEAMS_COURSE_IDNUMBER_PATTERN: ''
  TEAMS_OWNER_ROLES: 'editingteacher'
  TEAMS_MEMBER_ROLES: 'student'
  TEAMS_NAME_PREFIX: ''
  TEAMS_NAME_FIELD: 'fullname'
  TEAMS_NAME_SUFFIX: ''
  TEAMS_MAIL_NICKNAME_PREFIX: 'moodle-'
  TEAMS_TEMPLATE: 'standard'
  TEAMS_VISIBILITY: 'private'
  TEAMS_ARCHIVE_ENDED: 'false'
  TEAMS_ARCHIVE_HIDDEN: 'false'
  TEAMS_COURSES_PER_SHARD: '50'
  TEAMS_CONCURRENCY: '32'
  TEAMS_POLL_SECS: '60'
  TEAMS_FRESH_GROUP_TRIES: '3'
  TEAMS_FRESH_GROUP_WAIT_SECS: '10'
}
var teams = union(teamsDefaults, teamsSettings)

// The code's defaults for the Entra → Moodle user sync (`handler sync --entra`; every scheduled
// run's `entra` shard when ENTRA_SYNC is 'true').
var entraDefaults = {
  ENTRA_SYNC: 'false'
  ENTRA_SYNC_CREATE: 'true'
  ENTRA_SYNC_UPDATE: 'true'
  ENTRA_SYNC_SUSPEND: 'true'
  ENTRA_SYNC_REENABLE: 'true'
  ENTRA_SYNC_DELETE: 'false'
  ENTRA_USERNAME_ATTRIBUTE: 'userPrincipalName'
  ENTRA_MATCH: 'username=userPrincipalName,email=mail'
  ENTRA_FIELD_MAP: 'firstname=givenName:always,lastname=surname:always,email=mail|userPrincipalName:always,department=department:always'
  ENTRA_AUTH: 'oauth2'
  ENTRA_CREATE_FILTER: ''
  ENTRA_ENT_LINK: ''
  ENTRA_BATCH_SIZE: '100'
  ENTRA_SYNC_PHOTO: 'false'
  ENTRA_PHOTO_RECHECK_HOURS: '168'
}
var entra = union(entraDefaults, entraSettings)

// Settings the code reads (`handler settings`). A secret is only referenced when its feature is on:
// an unresolved reference would reach the app as the literal `@Microsoft.KeyVault(...)` text.
var appSettings = {
  // storage: identity-based connection shared by the host and the app
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  STORE_BACKEND: 'azure'
  STORE_TABLE_PREFIX: storeTablePrefix
  // core
  LOG_LEVEL: logLevel
  LOG_FORMAT: 'json'
  MAX_BODY_BYTES: string(maxBodyBytes)
  STORE_CHECK_TIMEOUT_SECS: string(storeCheckTimeoutSecs)
  HTTP_READ_TIMEOUT_SECS: string(httpReadTimeoutSecs)
  HTTP_MAX_CONNECTIONS: string(httpMaxConnections)
  SYNC_SCHEDULE: syncSchedule
  PUBLIC_URL: empty(publicUrl) ? appUrl : publicUrl
  // Moodle
  MOODLE_URL: moodleUrl
  MOODLE_TOKEN: empty(moodleUrl) ? '' : secretRef.moodleToken
  MOODLE_MAX_FORM_FIELDS: string(moodleMaxFormFields)
  MOODLE_TIMEOUT_SECS: string(moodleTimeoutSecs)
  MOODLE_ALLOW_INSECURE: string(moodleAllowInsecure)
  // bot (single-tenant: client secret from Key Vault; managed identity: no secret)
  BOT_APP_ID: botAppIdEffective
  BOT_APP_TYPE: botAppType
  BOT_TENANT_ID: tenant().tenantId
  BOT_APP_PASSWORD: botAppType == 'SingleTenant' ? secretRef.botClientSecret : ''
  BOT_MSI_CLIENT_ID: botAppType == 'UserAssignedMSI' ? identity.properties.clientId : ''
  BOT_OPENID_METADATA_URL: 'https://login.botframework.com/v1/.well-known/openidconfiguration'
  BOT_TOKEN_ENDPOINT: ''
  BOT_DEFAULT_LOCALE: botDefaultLocale
  BOT_DUE_SOON_DAYS: string(botDueSoonDays)
  BOT_ANSWER_CACHE_SECS: string(botAnswerCacheSecs)
  BOT_APP_RATE_PER_SEC: string(botAppRatePerSec)
  BOT_PARENT_LINKS_REPORT: botParentLinksReport
  BOT_PARENT_ROLE: botParentRole
  // Microsoft Graph (secret or certificate from Key Vault; managed identity: no secret)
  GRAPH_AUTH: graphAuth
  GRAPH_CLIENT_ID: graphAuth == 'managed-identity' ? '' : graphClientId
  GRAPH_TENANT_ID: tenant().tenantId
  GRAPH_CLIENT_SECRET: graphEnabled && graphAuth == 'secret' ? secretRef.graphClientSecret : ''
  GRAPH_CERTIFICATE: graphEnabled && graphAuth == 'certificate' ? secretRef.graphCertificate : ''
  GRAPH_CERTIFICATE_KEY: graphEnabled && graphAuth == 'certificate' ? secretRef.graphCertificateKey : ''
  GRAPH_MSI_CLIENT_ID: graphAuth == 'managed-identity' ? identity.properties.clientId : ''
  GRAPH_BASE_URL: 'https://graph.microsoft.com/v1.0'
  GRAPH_TOKEN_ENDPOINT: ''
  GRAPH_IDENTITY_RU_PER_10S: string(graphIdentityRuPer10s)
  // Entra → Moodle users
  ENTRA_SYNC: string(entra.ENTRA_SYNC)
  ENTRA_SYNC_CREATE: string(entra.ENTRA_SYNC_CREATE)
  ENTRA_SYNC_UPDATE: string(entra.ENTRA_SYNC_UPDATE)
  ENTRA_SYNC_SUSPEND: string(entra.ENTRA_SYNC_SUSPEND)
  ENTRA_SYNC_REENABLE: string(entra.ENTRA_SYNC_REENABLE)
  ENTRA_SYNC_DELETE: string(entra.ENTRA_SYNC_DELETE)
  ENTRA_USERNAME_ATTRIBUTE: string(entra.ENTRA_USERNAME_ATTRIBUTE)
  ENTRA_MATCH: string(entra.ENTRA_MATCH)
  ENTRA_FIELD_MAP: string(entra.ENTRA_FIELD_MAP)
  ENTRA_AUTH: string(entra.ENTRA_AUTH)
  ENTRA_CREATE_FILTER: string(entra.ENTRA_CREATE_FILTER)
  ENTRA_ENT_LINK: string(entra.ENTRA_ENT_LINK)
  ENTRA_BATCH_SIZE: string(entra.ENTRA_BATCH_SIZE)
  ENTRA_SYNC_PHOTO: string(entra.ENTRA_SYNC_PHOTO)
  ENTRA_PHOTO_RECHECK_HOURS: string(entra.ENTRA_PHOTO_RECHECK_HOURS)
  // LDAP source
  LDAP_URL: ldapUrl
  LDAP_BIND_DN: ldapBindDn
  LDAP_BIND_PASSWORD: empty(ldapUrl) ? '' : secretRef.ldapBindPassword
  SYNC_ENABLED: string(syncEnabled)
  LDAP_GROUPS_BASE: string(sync.LDAP_GROUPS_BASE)
  LDAP_GROUPS_FILTER: string(sync.LDAP_GROUPS_FILTER)
  LDAP_GROUP_MEMBER_ATTRIBUTE: string(sync.LDAP_GROUP_MEMBER_ATTRIBUTE)
  LDAP_GROUP_NAME_ATTRIBUTE: string(sync.LDAP_GROUP_NAME_ATTRIBUTE)
  LDAP_PAGE_SIZE: string(sync.LDAP_PAGE_SIZE)
  LDAP_PEOPLE_BASE: string(sync.LDAP_PEOPLE_BASE)
  LDAP_STAFF_BASE: string(sync.LDAP_STAFF_BASE)
  LDAP_STAFF_FILTER: string(sync.LDAP_STAFF_FILTER)
  LDAP_STARTTLS: string(sync.LDAP_STARTTLS)
  LDAP_ALLOW_INSECURE: string(sync.LDAP_ALLOW_INSECURE)
  LDAP_STUDENTS_BASE: string(sync.LDAP_STUDENTS_BASE)
  LDAP_STUDENTS_FILTER: string(sync.LDAP_STUDENTS_FILTER)
  LDAP_TEACHERS_BASE: string(sync.LDAP_TEACHERS_BASE)
  LDAP_TEACHERS_FILTER: string(sync.LDAP_TEACHERS_FILTER)
  LDAP_TIMEOUT_SECS: string(sync.LDAP_TIMEOUT_SECS)
  LDAP_PARENTS_BASE: string(sync.LDAP_PARENTS_BASE)
  LDAP_PARENTS_FILTER: string(sync.LDAP_PARENTS_FILTER)
  SYNC_PARENTS: string(sync.SYNC_PARENTS)
  SYNC_PARENT_ROLE: string(sync.SYNC_PARENT_ROLE)
  SYNC_BATCH_SIZE: string(sync.SYNC_BATCH_SIZE)
  SYNC_COHORT_ATTRIBUTE: string(sync.SYNC_COHORT_ATTRIBUTE)
  SYNC_COHORT_PREFIX: string(sync.SYNC_COHORT_PREFIX)
  SYNC_COHORT_SOURCE: string(sync.SYNC_COHORT_SOURCE)
  SYNC_FAKE_EMAIL_DOMAIN: string(sync.SYNC_FAKE_EMAIL_DOMAIN)
  SYNC_LEASE_SECS: string(sync.SYNC_LEASE_SECS)
  SYNC_TOKEN_RECHECK_SECS: string(sync.SYNC_TOKEN_RECHECK_SECS)
  SYNC_MAP_CUSTOM: string(sync.SYNC_MAP_CUSTOM)
  SYNC_MAP_DEPARTMENT: string(sync.SYNC_MAP_DEPARTMENT)
  SYNC_MAP_EMAIL: string(sync.SYNC_MAP_EMAIL)
  SYNC_MAP_FIRSTNAME: string(sync.SYNC_MAP_FIRSTNAME)
  SYNC_MAP_IDNUMBER: string(sync.SYNC_MAP_IDNUMBER)
  SYNC_MAP_INSTITUTION: string(sync.SYNC_MAP_INSTITUTION)
  SYNC_MAP_KEY: string(sync.SYNC_MAP_KEY)
  SYNC_MAP_LASTNAME: string(sync.SYNC_MAP_LASTNAME)
  SYNC_MAP_USERNAME: string(sync.SYNC_MAP_USERNAME)
  SYNC_OVERLAP_SECS: string(sync.SYNC_OVERLAP_SECS)
  SYNC_REMOVAL: string(sync.SYNC_REMOVAL)
  SYNC_REMOVAL_MAX_SHARE: string(sync.SYNC_REMOVAL_MAX_SHARE)
  SYNC_ROLE_IDS: string(sync.SYNC_ROLE_IDS)
  SYNC_ROLE_RULES: string(sync.SYNC_ROLE_RULES)
  SYNC_SOURCE: string(sync.SYNC_SOURCE)
  SYNC_SOURCE_FILE: string(sync.SYNC_SOURCE_FILE)
  SYNC_TRACE_LIMIT: string(sync.SYNC_TRACE_LIMIT)
  SYNC_PROTECTED_USERS: string(sync.SYNC_PROTECTED_USERS)
  SYNC_USER_AUTH: string(sync.SYNC_USER_AUTH)
  SYNC_SUSPEND_ON_DELETION_DATE: string(sync.SYNC_SUSPEND_ON_DELETION_DATE)
  SYNC_MANUAL_PASSWORD_MAIL: string(sync.SYNC_MANUAL_PASSWORD_MAIL)
  SYNC_LEAVER_MEMBERSHIPS: string(sync.SYNC_LEAVER_MEMBERSHIPS)
  SYNC_FULL_SCHEDULE: string(sync.SYNC_FULL_SCHEDULE)
  SYNC_DELETION_DATE_ATTRIBUTE: string(sync.SYNC_DELETION_DATE_ATTRIBUTE)
  SYNC_DECLARED_DUPLICATES: string(sync.SYNC_DECLARED_DUPLICATES)
  LDAP_STRUCTURES_BASE: string(sync.LDAP_STRUCTURES_BASE)
  SYNC_SCHOOL_NAME_ATTRIBUTE: string(sync.SYNC_SCHOOL_NAME_ATTRIBUTE)
  SYNC_WRITE_CONCURRENCY: string(sync.SYNC_WRITE_CONCURRENCY)
  // Moodle courses -> Teams
  TEAMS_COURSES: string(teams.TEAMS_COURSES)
  TEAMS_COURSE_IDS: string(teams.TEAMS_COURSE_IDS)
  TEAMS_COURSE_CATEGORIES: string(teams.TEAMS_COURSE_CATEGORIES)
  TEAMS_COURSE_IDNUMBER_PATTERN: string(teams.TEAMS_COURSE_IDNUMBER_PATTERN)
  TEAMS_OWNER_ROLES: string(teams.TEAMS_OWNER_ROLES)
  TEAMS_MEMBER_ROLES: string(teams.TEAMS_MEMBER_ROLES)
  TEAMS_NAME_PREFIX: string(teams.TEAMS_NAME_PREFIX)
  TEAMS_NAME_FIELD: string(teams.TEAMS_NAME_FIELD)
  TEAMS_NAME_SUFFIX: string(teams.TEAMS_NAME_SUFFIX)
  TEAMS_MAIL_NICKNAME_PREFIX: string(teams.TEAMS_MAIL_NICKNAME_PREFIX)
  TEAMS_TEMPLATE: string(teams.TEAMS_TEMPLATE)
  TEAMS_VISIBILITY: string(teams.TEAMS_VISIBILITY)
  TEAMS_ARCHIVE_ENDED: string(teams.TEAMS_ARCHIVE_ENDED)
  TEAMS_ARCHIVE_HIDDEN: string(teams.TEAMS_ARCHIVE_HIDDEN)
  TEAMS_COURSES_PER_SHARD: string(teams.TEAMS_COURSES_PER_SHARD)
  TEAMS_CONCURRENCY: string(teams.TEAMS_CONCURRENCY)
  TEAMS_POLL_SECS: string(teams.TEAMS_POLL_SECS)
  TEAMS_FRESH_GROUP_TRIES: string(teams.TEAMS_FRESH_GROUP_TRIES)
  TEAMS_FRESH_GROUP_WAIT_SECS: string(teams.TEAMS_FRESH_GROUP_WAIT_SECS)
  // Moodle -> bridge notifications
  WEBHOOK_SECRET: secretRef.webhookSecret
  WEBHOOK_REPLAY_WINDOW_SECS: string(webhookReplayWindowSecs)
  WEBHOOK_MAX_BODY_BYTES: string(webhookMaxBodyBytes)
  NOTIFY_SWEEP_SCHEDULE: notifySweepSchedule
  NOTIFY_SWEEP_COURSES: notifySweepCourses
  NOTIFY_DUE_WINDOW_HOURS: string(notifyDueWindowHours)
  NOTIFY_RETENTION_DAYS: string(notifyRetentionDays)
  // channel configuration page: Teams SSO tokens checked against the tenant's own metadata
  CONNECTOR_SSO_OPENID_METADATA_URL: ''
  // Teams app package (publish sign-in runs from an admin's `handler teams-app publish`)
  TEAMS_APP_ID: string(teamsApp.TEAMS_APP_ID)
  TEAMS_APP_VERSION: string(teamsApp.TEAMS_APP_VERSION)
  TEAMS_APP_NAME: string(teamsApp.TEAMS_APP_NAME)
  TEAMS_APP_FULL_NAME: string(teamsApp.TEAMS_APP_FULL_NAME)
  TEAMS_APP_DEVELOPER: string(teamsApp.TEAMS_APP_DEVELOPER)
  TEAMS_APP_ACCENT_COLOR: string(teamsApp.TEAMS_APP_ACCENT_COLOR)
  TEAMS_APP_COLOR_ICON: string(teamsApp.TEAMS_APP_COLOR_ICON)
  TEAMS_APP_OUTLINE_ICON: string(teamsApp.TEAMS_APP_OUTLINE_ICON)
  TEAMS_APP_SSO_RESOURCE: string(teamsApp.TEAMS_APP_SSO_RESOURCE)
  TEAMS_APP_PRIVACY_URL: string(teamsApp.TEAMS_APP_PRIVACY_URL)
  TEAMS_APP_TERMS_URL: string(teamsApp.TEAMS_APP_TERMS_URL)
  TEAMS_APP_AUTHORITY: string(teamsApp.TEAMS_APP_AUTHORITY)
  TEAMS_APP_TENANT_ID: string(teamsApp.TEAMS_APP_TENANT_ID)
  TEAMS_APP_PUBLISH_CLIENT_ID: string(teamsApp.TEAMS_APP_PUBLISH_CLIENT_ID)
  TEAMS_APP_SERVICE_URL: string(teamsApp.TEAMS_APP_SERVICE_URL)
  TEAMS_APP_INSTALL_SCHEDULE: string(teamsApp.TEAMS_APP_INSTALL_SCHEDULE)
  // the publish sign-in's refresh token: a secret of the state vault, written with the identity
  TEAMS_APP_TOKEN_VAULT_URL: stateVault.outputs.uri
  TEAMS_APP_TOKEN_SECRET: 'teams-app-publish-refresh-token'
  TEAMS_APP_TOKEN_VAULT_CLIENT_ID: identity.properties.clientId
  // admin functions: App Service authentication + membership of these groups, in this tenant
  ADMIN_GROUP_IDS: adminGroupIds
  ADMIN_TENANT_ID: tenant().tenantId
}

// Settings only the Functions platform reads.
var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
}

// Premium/Dedicated only (Flex takes the runtime from functionAppConfig and rejects these).
var classicPlanSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  WEBSITE_RUN_FROM_PACKAGE: '${storage.outputs.deploymentContainerUrl}/${packageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identity.id
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: names.functionApp
}

// The whole set is written each time: a setting removed here disappears from the app.
resource siteSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, platformSettings, isFlex ? {} : classicPlanSettings)
  dependsOn: [
    functionApp
  ]
}

// App Service authentication (Easy Auth) with Entra: it signs admins in and hands the app their
// claims in `x-ms-client-principal` (dropping any copy a client sends; the app trusts it only
// when the platform sets WEBSITE_AUTH_ENABLED). Every route needs a signed-in user except the
// ones that authenticate each request themselves: the bot (Bot Framework JWT), the Moodle
// webhook (HMAC signature) and the channel configuration page (Teams SSO token), which Teams
// and Moodle call without a session. tests/infra_bicep.rs checks this list against the
// function table.
resource siteAuth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(authClientId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: [
        '/api/messages'
        '/api/webhook'
        '/connector/*'
      ]
    }
    httpSettings: {
      requireHttps: true
      routes: {
        apiPrefix: '/.auth'
      }
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            authClientId
            'api://${authClientId}'
          ]
        }
        login: {
          disableWWWAuthenticate: false
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
  }
  dependsOn: [
    functionApp
  ]
}

// ---- outputs -------------------------------------------------------------------------------------

output functionAppName string = functionApp.outputs.name
output functionAppUrl string = appUrl
output botEndpoint string = bot.outputs.endpoint
output moodleWebhookUrl string = '${appUrl}/api/webhook'
output adminUrl string = '${appUrl}/manage/sync/'
output appId string = botAppIdEffective
output botAppType string = botAppType
output tenantId string = tenant().tenantId
output botName string = bot.outputs.name
output keyVaultName string = keyVault.outputs.name
output stateVaultName string = stateVault.outputs.name
output storageAccountName string = storage.outputs.name
output identityClientId string = identity.properties.clientId
output hostingPlan string = hostingPlan
output packageBlobUrl string = isFlex ? '' : '${storage.outputs.deploymentContainerUrl}/${packageBlobName}'
output moodleEnabled bool = !empty(moodleUrl)
output ldapEnabled bool = !empty(ldapUrl)
output graphEnabled bool = graphEnabled
output graphAuth string = graphAuth
