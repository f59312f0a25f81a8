#!/usr/bin/env bash
# Deploys moodle-teams-bridge to Azure with the Azure CLI only:
#   1. builds the release binary and the package (infra/package.sh)
#   2. az deployment group create with infra/main.bicep
#   3. makes sure each Key Vault secret the app settings reference exists (values from the
#      environment, never printed; the webhook secret is generated once if absent)
#   4. publishes the package (Flex: one deploy via config-zip; Premium/Dedicated: the blob that
#      WEBSITE_RUN_FROM_PACKAGE points to), unless the same package is already published
#   5. prints the next steps
# Running it twice changes nothing the second time: the template is declarative, secrets are only
# written when their value differs, and the package's SHA-256 is remembered in a tag on the
# resource group, so an unchanged package is not published again.
#
# Usage: infra/deploy.sh --resource-group RG [--location LOC] [--parameters FILE]
#                        [--binary PATH] [--target TRIPLE] [--what-if]
#   --resource-group RG  target resource group (created in --location if it does not exist)
#   --location LOC       region for a new resource group (default francecentral)
#   --parameters FILE    parameters file (default infra/main.parameters.json)
#   --binary PATH        package this binary instead of building one
#   --target TRIPLE      cargo target for the build (default x86_64-unknown-linux-musl)
#   --what-if            only show what the template would change (az deployment group what-if);
#                        builds nothing, writes nothing
# Secrets, read from the environment when set (never passed on a command line or printed):
#   MOODLE_TOKEN         when moodleUrl is set
#   BOT_APP_PASSWORD    when botAppType is SingleTenant
#   LDAP_BIND_PASSWORD   when ldapUrl is set
#   WEBHOOK_SECRET       optional: generated once when absent from the vault
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
resource_group=""
location="francecentral"
parameters="$here/main.parameters.json"
binary=""
target="x86_64-unknown-linux-musl"
what_if=false
deployment_name="moodle-teams-bridge"

die() { echo "deploy.sh: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --resource-group|-g) [ $# -ge 2 ] || die "$1 needs a value"; resource_group=$2; shift 2 ;;
    --location|-l) [ $# -ge 2 ] || die "$1 needs a value"; location=$2; shift 2 ;;
    --parameters|-p) [ $# -ge 2 ] || die "$1 needs a value"; parameters=$2; shift 2 ;;
    --binary) [ $# -ge 2 ] || die "$1 needs a value"; binary=$2; shift 2 ;;
    --target) [ $# -ge 2 ] || die "$1 needs a value"; target=$2; shift 2 ;;
    --what-if) what_if=true; shift ;;
    -h|--help) sed -n '2,31p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -n "$resource_group" ] || die "--resource-group is required (see --help)"
[ -f "$parameters" ] || die "parameters file not found: $parameters"
command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is required"
command -v python3 >/dev/null 2>&1 || die "python3 is required"
az account show --output none 2>/dev/null || die "not signed in: run 'az login' first"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
umask 077

# Reads one key of a JSON file: json_get FILE KEY.
json_get() {
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; v=v.get("value", v) if isinstance(v, dict) else v; print(str(v).lower() if isinstance(v, bool) else v)' "$1" "$2"
}

# Retries a command while Azure RBAC assignments propagate (up to ~5 minutes).
with_rbac_retry() {
  local i
  for i in $(seq 1 30); do
    if "$@"; then return 0; fi
    [ "$i" -lt 30 ] || return 1
    echo "   (waiting for role assignments to propagate, attempt $i/30)" >&2
    sleep 10
  done
}

# ---- who is deploying: gets Key Vault Secrets Officer (and package upload off Flex) ----------------
deployer_id=""
deployer_type="User"
if ! deployer_id=$(az ad signed-in-user show --query id --output tsv 2>/dev/null); then
  sp_app_id=$(az account show --query user.name --output tsv)
  deployer_id=$(az ad sp show --id "$sp_app_id" --query id --output tsv)
  deployer_type="ServicePrincipal"
fi

template_args=(
  --resource-group "$resource_group"
  --name "$deployment_name"
  --template-file "$here/main.bicep"
  --parameters "@$parameters"
  --parameters "deployerPrincipalId=$deployer_id" "deployerPrincipalType=$deployer_type"
)

if $what_if; then
  step "what-if for resource group $resource_group"
  if [ "$(az group exists --name "$resource_group")" != "true" ]; then
    echo "resource group $resource_group does not exist: every resource would be created." >&2
    exit 0
  fi
  az deployment group what-if "${template_args[@]}"
  exit 0
fi

# ---- 1. package --------------------------------------------------------------------------------
step "building the package"
package_args=(--target "$target" --out "$workdir/package")
[ -z "$binary" ] || package_args+=(--binary "$binary")
zip_path=$("$here/package.sh" "${package_args[@]}" | tail -n 1)
package_sha=$(sha256sum "$zip_path" | cut -d' ' -f1)

# ---- 2. infrastructure ---------------------------------------------------------------------------
step "resource group $resource_group"
if [ "$(az group exists --name "$resource_group")" != "true" ]; then
  az group create --name "$resource_group" --location "$location" --output none
fi
rg_id=$(az group show --name "$resource_group" --query id --output tsv)

step "deploying infra/main.bicep"
az deployment group create "${template_args[@]}" --query properties.outputs --output json >"$workdir/outputs.json"

app_name=$(json_get "$workdir/outputs.json" functionAppName)
app_url=$(json_get "$workdir/outputs.json" functionAppUrl)
bot_endpoint=$(json_get "$workdir/outputs.json" botEndpoint)
webhook_url=$(json_get "$workdir/outputs.json" moodleWebhookUrl)
admin_url=$(json_get "$workdir/outputs.json" adminUrl)
app_id=$(json_get "$workdir/outputs.json" appId)
tenant_id=$(json_get "$workdir/outputs.json" tenantId)
vault=$(json_get "$workdir/outputs.json" keyVaultName)
storage_account=$(json_get "$workdir/outputs.json" storageAccountName)
hosting_plan=$(json_get "$workdir/outputs.json" hostingPlan)
moodle_enabled=$(json_get "$workdir/outputs.json" moodleEnabled)
ldap_enabled=$(json_get "$workdir/outputs.json" ldapEnabled)
bot_app_type=$(json_get "$workdir/outputs.json" botAppType)
graph_enabled=$(json_get "$workdir/outputs.json" graphEnabled)
graph_auth=$(json_get "$workdir/outputs.json" graphAuth)

# ---- 3. secrets ----------------------------------------------------------------------------------
step "Key Vault secrets in $vault"
with_rbac_retry az keyvault secret list --vault-name "$vault" --query "[].name" --output tsv >"$workdir/secret-names" \
  || die "cannot list secrets in $vault (is the Key Vault Secrets Officer role assigned to you?)"
secrets_changed=false
missing=()

# ensure_secret SECRET_NAME ENV_VAR MODE: MODE is required or generate. Values go through a file.
ensure_secret() {
  local name=$1 var=$2 mode=$3 file="$workdir/secret-value" exists=false
  grep -qx "$name" "$workdir/secret-names" && exists=true
  if [ -n "${!var:-}" ]; then
    printf '%s' "${!var}" >"$file"
    if $exists && [ "$(az keyvault secret show --vault-name "$vault" --name "$name" --query value --output tsv)" = "${!var}" ]; then
      echo "   $name: unchanged" >&2
    else
      az keyvault secret set --vault-name "$vault" --name "$name" --file "$file" --encoding utf-8 --output none
      echo "   $name: set from \$$var" >&2
      secrets_changed=true
    fi
    rm -f "$file"
  elif $exists; then
    echo "   $name: present" >&2
  elif [ "$mode" = generate ]; then
    python3 -c 'import secrets,sys; open(sys.argv[1], "w").write(secrets.token_urlsafe(32))' "$file"
    az keyvault secret set --vault-name "$vault" --name "$name" --file "$file" --encoding utf-8 --output none
    rm -f "$file"
    echo "   $name: generated" >&2
    secrets_changed=true
  else
    missing+=("$name (set \$$var)")
  fi
}

ensure_secret webhook-secret WEBHOOK_SECRET generate
[ "$moodle_enabled" != "true" ] || ensure_secret moodle-token MOODLE_TOKEN required
[ "$bot_app_type" != "SingleTenant" ] || ensure_secret bot-client-secret BOT_APP_PASSWORD required
[ "$ldap_enabled" != "true" ] || ensure_secret ldap-bind-password LDAP_BIND_PASSWORD required
if [ "$graph_enabled" = "true" ] && [ "$graph_auth" = "secret" ]; then
  ensure_secret graph-client-secret GRAPH_CLIENT_SECRET required
fi
if [ "$graph_enabled" = "true" ] && [ "$graph_auth" = "certificate" ]; then
  ensure_secret graph-certificate GRAPH_CERTIFICATE required
  ensure_secret graph-certificate-key GRAPH_CERTIFICATE_KEY required
fi
if [ ${#missing[@]} -gt 0 ]; then
  die "secrets missing from $vault: ${missing[*]}; export them and run again (nothing was published)"
fi

# ---- 4. publish ----------------------------------------------------------------------------------
tag="pkg-sha256-$app_name"
published_sha=$(az tag list --resource-id "$rg_id" --query "properties.tags.\"$tag\"" --output tsv 2>/dev/null || true)
if [ "$published_sha" = "$package_sha" ]; then
  step "package unchanged ($package_sha): not published again"
  if $secrets_changed; then
    az functionapp restart --resource-group "$resource_group" --name "$app_name" --output none
    echo "   restarted $app_name so it reads the new secrets" >&2
  fi
else
  step "publishing the package to $app_name ($hosting_plan)"
  if [ "$hosting_plan" = "FlexConsumption" ]; then
    az functionapp deployment source config-zip --resource-group "$resource_group" --name "$app_name" \
      --src "$zip_path" --output none
  else
    with_rbac_retry az storage blob upload --auth-mode login --account-name "$storage_account" \
      --container-name app-package --name handler.zip --file "$zip_path" --overwrite --output none
    az functionapp restart --resource-group "$resource_group" --name "$app_name" --output none
  fi
  az tag update --resource-id "$rg_id" --operation Merge --tags "$tag=$package_sha" --output none
fi

# ---- 5. next steps -------------------------------------------------------------------------------
cat <<EOF

Deployed.
  Function app       $app_url
  Bot endpoint       $bot_endpoint
  Moodle webhook URL $webhook_url
  Admin page         $admin_url
  Bot app id         $app_id

Next steps:
EOF
if [ "$bot_app_type" = "SingleTenant" ]; then
  cat <<EOF
  1. Grant admin consent to the bot's app registration (Graph application permissions):
       https://login.microsoftonline.com/$tenant_id/adminconsent?client_id=$app_id
EOF
else
  cat <<EOF
  1. The bot is the app's managed identity ($app_id): grant its service principal the Microsoft
     Graph application roles it needs (app role assignments; no consent URL for managed identities).
EOF
fi
cat <<EOF
  2. In Moodle, set the notification webhook to $webhook_url with the shared secret from:
       az keyvault secret show --vault-name $vault --name webhook-secret --query value -o tsv
  3. Check the configuration the app sees:
       open $admin_url
  4. Build and publish the Teams app package to the organisation catalogue (signs in an admin):
       handler teams-app publish
EOF
