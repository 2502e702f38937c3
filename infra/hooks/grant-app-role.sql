-- Run by infra/hooks/postprovision.sh in the coremachine database, as the deploying Microsoft Entra
-- administrator, right after it ran the migrations (so it owns the schema). The app's rows live in
-- an ordinary NOLOGIN role, coremachine_app; the app's own login role (create-app-principal.sql)
-- only gets membership in it. What the engine does (core/state/*.ts, infra/migrations/*.sql) needs
-- row access and nothing else: SELECT ... FOR UPDATE [SKIP LOCKED] needs UPDATE; bigserial columns
-- need USAGE on their sequences; the event triggers run their functions (EXECUTE is PUBLIC's by
-- default); advisory locks need no privilege; nothing truncates, locks tables or runs DDL.
-- No CREATE on the schema or the database, nothing on the public schema.
-- psql variable: app_role.
SET coremachine.app_role = :'app_role';

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'coremachine_app') THEN
    CREATE ROLE coremachine_app NOLOGIN;
  END IF;
END
$$;

GRANT USAGE ON SCHEMA coremachine TO coremachine_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA coremachine TO coremachine_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA coremachine TO coremachine_app;
-- Tables and sequences that later migrations (run by this same administrator) create.
ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO coremachine_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO coremachine_app;

-- Before issue 21 these privileges were granted to the app's role itself: keep them in one place.
REVOKE ALL ON ALL TABLES IN SCHEMA coremachine FROM :"app_role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA coremachine FROM :"app_role";
REVOKE ALL ON SCHEMA coremachine FROM :"app_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine REVOKE ALL ON TABLES FROM :"app_role";
ALTER DEFAULT PRIVILEGES IN SCHEMA coremachine REVOKE ALL ON SEQUENCES FROM :"app_role";

-- INHERIT: the app uses the privileges without SET ROLE, whatever its role's own INHERIT attribute (PostgreSQL 16).
GRANT coremachine_app TO :"app_role" WITH INHERIT TRUE;

-- A schema migrated by another principal fails the GRANTs above, or leaves gaps they do not report:
-- check the result rather than trust it.
DO $$
DECLARE
  app_role text := current_setting('coremachine.app_role');
  missing text;
BEGIN
  IF NOT pg_has_role(app_role, 'coremachine_app', 'USAGE') THEN
    RAISE EXCEPTION 'role "%" is not a member of coremachine_app', app_role;
  END IF;
  IF EXISTS (
    SELECT 1 FROM pg_roles
    WHERE rolname = 'coremachine_app' AND (rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)
  ) THEN
    RAISE EXCEPTION 'coremachine_app must be an ordinary NOLOGIN role';
  END IF;
  SELECT string_agg(format('%s (owner %s)', c.oid::regclass, pg_get_userbyid(c.relowner)), ', ') INTO missing
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'coremachine' AND c.relkind IN ('r', 'p', 'v')
    AND NOT (has_table_privilege(app_role, c.oid, 'SELECT') AND has_table_privilege(app_role, c.oid, 'INSERT')
      AND has_table_privilege(app_role, c.oid, 'UPDATE') AND has_table_privilege(app_role, c.oid, 'DELETE'));
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'coremachine_app could not be granted rows of %: run the hook as the principal that owns them', missing;
  END IF;
  IF has_schema_privilege(app_role, 'coremachine', 'CREATE') OR has_database_privilege(app_role, current_database(), 'CREATE') THEN
    RAISE EXCEPTION 'role "%" may create objects; it must not', app_role;
  END IF;
END
$$;
