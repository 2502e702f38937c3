#!/bin/sh
# azd preprovision hook: `coremachine doctor` (below), then: Bicep makes whoever deploys the PostgreSQL server's Microsoft Entra
# administrator. azd gives it the principal's object id and type (AZURE_PRINCIPAL_ID/_TYPE) but not
# its name, which becomes the administrator's database role: a user's user principal name, a service
# principal's display name (https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-manage-azure-ad-users).
# This asks `az` for it and stores it as AZURE_PRINCIPAL_NAME (main.parameters.json); azd reloads the
# environment after a hook (https://learn.microsoft.com/azure/developer/azure-developer-cli/azd-extensibility).
# `az` must be signed in as the same principal as azd; postprovision.sh checks that it was.
set -eu

# The preflight first: the profile, maximumInstanceCount, PG_POOL_MAX and the always-ready counts,
# as azd is about to pass them to infra/main.bicep, against the connection budget of every scale
# group the app registers (docs/deploying.md, "Scaling and connections"). It reads files and the environment
# only, no database and no Azure; a deployment that does not fit stops here (exit 1).
npm run build --silent
node dist/bin/coremachine.js doctor

command -v az >/dev/null 2>&1 || { echo "preprovision: needs the Azure CLI (az), signed in as the account azd uses" >&2; exit 1; }

case "${CLIENT_IP_ADDRESS:-}" in
  0.0.0.0|*/*|*-*)
    echo "preprovision: CLIENT_IP_ADDRESS must be one public IPv4 address (yours), not '${CLIENT_IP_ADDRESS}'" >&2
    exit 1 ;;
esac

kind=$(az account show --query user.type -o tsv)
case "$kind" in
  user) name=$(az ad signed-in-user show --query userPrincipalName -o tsv) ;;
  servicePrincipal) name=$(az ad sp show --id "$(az account show --query user.name -o tsv)" --query displayName -o tsv) ;;
  *) echo "preprovision: az is signed in as '$kind'; sign in as a user or a service principal" >&2; exit 1 ;;
esac
[ -n "$name" ] || { echo "preprovision: could not read the signed-in principal's name from Microsoft Entra ID" >&2; exit 1; }
azd env set AZURE_PRINCIPAL_NAME "$name"
echo "preprovision: the PostgreSQL administrator will be \"$name\" ($kind)"
