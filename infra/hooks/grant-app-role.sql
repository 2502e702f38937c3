-- Run by infra/hooks/postprovision.sh as the administrator login that owns the coremachine
-- schema (it ran the migrations). The Function app's database role (its managed identity, created
-- by the server when Bicep made the identity an Entra administrator) gets what the engine needs:
-- rows, not DDL. Default privileges cover tables and sequences that later migrations create.
-- psql variable: app_role.
GRANT USAGE ON SCHEMA coremachine TO :"app_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA coremachine TO :"app_role";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA coremachine TO :"app_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app_role";
