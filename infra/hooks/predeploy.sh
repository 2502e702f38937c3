#!/bin/sh
# azd predeploy hook, before new code replaces the running app: `coremachine db versions` checks
# that the registration about to be deployed still registers every job type version an active job
# runs (docs/defining-jobs.md, "Versions"). A job whose version is dropped does not fail, it waits;
# this stops the deploy that would make it wait (exit 1), naming the versions and their jobs.
# Same login as postprovision.sh (the deployer, the server's Entra administrator, with an access
# token as the password) and the same network path: without CLIENT_IP_ADDRESS the server takes no
# connection from here, so the check is skipped with a notice and the runtime guard remains.
set -eu
for var in POSTGRES_HOST POSTGRES_DATABASE POSTGRES_ADMIN_NAME; do
  eval "[ -n \"\${$var:-}\" ]" || { echo "predeploy: $var is not set; run azd provision first" >&2; exit 1; }
done
if [ -z "${CLIENT_IP_ADDRESS:-}" ]; then
  echo "predeploy: CLIENT_IP_ADDRESS is empty, so $POSTGRES_HOST takes no connection from here: job versions not checked." >&2
  echo "  Jobs of a version this deploy drops would wait (GET /api/health/details lists them) until it is deployed again." >&2
  exit 0
fi
command -v az >/dev/null 2>&1 || { echo "predeploy: needs the Azure CLI (az), signed in as the account azd uses" >&2; exit 1; }

# An Entra access token is the password (https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-configure-sign-in-azure-ad-authentication).
PGPASSWORD=$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)
export PGPASSWORD PGUSER="$POSTGRES_ADMIN_NAME"
npm run build --silent
user=$(node -e 'process.stdout.write(encodeURIComponent(process.env.PGUSER))')
token=$(node -e 'process.stdout.write(encodeURIComponent(process.env.PGPASSWORD))')
# The registration checked is the one `npm run package` bundles: package.json "coremachine.registration"
# in an app made by `coremachine init`, else the examples this repository ships.
DATABASE_URL="postgres://${user}:${token}@${POSTGRES_HOST}:5432/${POSTGRES_DATABASE}?sslmode=require" \
  DATABASE_AUTH=password node dist/bin/coremachine.js db versions
