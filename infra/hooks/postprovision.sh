#!/bin/sh
# azd postprovision hook, run as the deployer (the server's Microsoft Entra administrator, see
# main.bicep): migrate the schema, create the Function app's own database role and give it the
# engine's rows, nothing more. Idempotent: runs after every `azd provision`.
# Needs az (signed in as the account azd uses), psql, node, and a network path to the server: from
# your machine, `azd env set CLIENT_IP_ADDRESS <your public IPv4>` before `azd provision` (docs/deploying.md,
# "Before you start"). azd passes the environment and the Bicep outputs as environment variables.
set -eu
for var in POSTGRES_HOST POSTGRES_DATABASE POSTGRES_ADMIN_NAME POSTGRES_ADMIN_OBJECT_ID POSTGRES_APP_ROLE POSTGRES_APP_OBJECT_ID; do
  eval "[ -n \"\${$var:-}\" ]" || { echo "postprovision: $var is not set; run azd provision" >&2; exit 1; }
done
command -v psql >/dev/null 2>&1 || { echo "postprovision: needs psql (the PostgreSQL client)" >&2; exit 1; }

# An Entra access token is the password (https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-configure-sign-in-azure-ad-authentication).
# It is valid for 5 to 60 minutes and checked only at login: enough for the steps below.
PGPASSWORD=$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)
export PGPASSWORD
# The token must be the administrator's own (its oid claim), else the login fails with a less clear error.
oid=$(node -e 'const [, body = ""] = process.env.PGPASSWORD.split("."); process.stdout.write(String(JSON.parse(Buffer.from(body, "base64url").toString()).oid ?? ""))')
if [ "$oid" != "$POSTGRES_ADMIN_OBJECT_ID" ]; then
  echo "postprovision: az is signed in as $oid, but the server's administrator is $POSTGRES_ADMIN_NAME ($POSTGRES_ADMIN_OBJECT_ID, the account azd used)." >&2
  echo "  Sign az and azd in as the same account (or: azd config set auth.useAzCliAuth true), then azd provision." >&2
  exit 1
fi

export PGHOST="$POSTGRES_HOST" PGPORT=5432 PGUSER="$POSTGRES_ADMIN_NAME" PGSSLMODE=require PGCONNECT_TIMEOUT=15
if ! reason=$(PGDATABASE=postgres psql -X -q -c 'SELECT 1' 2>&1 >/dev/null); then
  if [ -z "${CLIENT_IP_ADDRESS:-}" ]; then
    # Public access closed on purpose (docs/deploying.md, "Before you start"): nothing to do from here.
    echo "postprovision: $POSTGRES_HOST takes no connections from this machine (CLIENT_IP_ADDRESS is empty); schema and roles left as they are." >&2
    echo "  To migrate from here: azd env set CLIENT_IP_ADDRESS <your public IPv4>, then azd provision." >&2
    exit 0
  fi
  echo "$reason" >&2
  echo "postprovision: cannot log in to $POSTGRES_HOST:5432 from this machine, although CLIENT_IP_ADDRESS is ${CLIENT_IP_ADDRESS}:" >&2
  echo "  is that still your public IPv4 address? (a new firewall rule can take a few minutes to apply)" >&2
  exit 1
fi

npm run build --silent
user=$(node -e 'process.stdout.write(encodeURIComponent(process.env.PGUSER))')
token=$(node -e 'process.stdout.write(encodeURIComponent(process.env.PGPASSWORD))')
# DATABASE_AUTH=password with the token as the password: the same login as psql's.
DATABASE_URL="postgres://${user}:${token}@${POSTGRES_HOST}:5432/${POSTGRES_DATABASE}?sslmode=require" \
  DATABASE_AUTH=password node dist/bin/coremachine.js db migrate

# pgaadauth_* in the postgres database, as Microsoft's examples run them (roles are server-wide):
# https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-configure-sign-in-azure-ad-authentication
PGDATABASE=postgres psql -X -v ON_ERROR_STOP=1 -v app_role="$POSTGRES_APP_ROLE" \
  -v app_object_id="$POSTGRES_APP_OBJECT_ID" -f infra/hooks/create-app-principal.sql
PGDATABASE="$POSTGRES_DATABASE" psql -X -v ON_ERROR_STOP=1 -v app_role="$POSTGRES_APP_ROLE" -f infra/hooks/grant-app-role.sql
echo "postprovision: schema migrated; role \"$POSTGRES_APP_ROLE\" (the app's managed identity) uses it through coremachine_app"
