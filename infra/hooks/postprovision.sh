#!/bin/sh
# azd postprovision hook: migrate the schema as the administrator login, then grant the Function
# app's Entra-authenticated database role its rows. Idempotent: runs after every `azd provision`.
# Needs psql and network access to the server (azd env set CLIENT_IP_ADDRESS <your public IP>,
# then azd provision, adds the firewall rule). azd passes the environment's values and the Bicep
# outputs (POSTGRES_HOST, POSTGRES_DATABASE, POSTGRES_APP_ROLE) as environment variables.
set -eu
: "${POSTGRES_HOST:?run azd provision first}" "${POSTGRES_DATABASE:?run azd provision first}" "${POSTGRES_APP_ROLE:?run azd provision first}"
: "${POSTGRES_ADMIN_PASSWORD:?azd env set POSTGRES_ADMIN_PASSWORD <the administrator password> so the hook can migrate}"
login="${POSTGRES_ADMIN_LOGIN:-coremachine}"
password=$(node -e 'process.stdout.write(encodeURIComponent(process.env.POSTGRES_ADMIN_PASSWORD))')

npm run build --silent
DATABASE_URL="postgres://${login}:${password}@${POSTGRES_HOST}:5432/${POSTGRES_DATABASE}?sslmode=require" \
  DATABASE_AUTH=password node dist/bin/coremachine.js db migrate

PGPASSWORD="$POSTGRES_ADMIN_PASSWORD" psql "host=${POSTGRES_HOST} port=5432 dbname=${POSTGRES_DATABASE} user=${login} sslmode=require" \
  -v ON_ERROR_STOP=1 -v app_role="$POSTGRES_APP_ROLE" -f infra/hooks/grant-app-role.sql
echo "postprovision: schema migrated; role \"$POSTGRES_APP_ROLE\" may use it with its Entra token"
