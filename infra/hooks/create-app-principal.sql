-- Run by infra/hooks/postprovision.sh in the `postgres` database (where Microsoft's examples call
-- pgaadauth_*), as the deploying Microsoft Entra administrator. Creates the Function app's database
-- role, mapped to its managed identity by object id, as an ordinary login: isAdmin = false (not a
-- member of azure_pg_admin, no CREATEROLE or CREATEDB), isMfa = false. Signature:
-- pgaadauth_create_principal_with_oid(roleName, objectId, objectType, isAdmin, isMfa), objectType
-- 'service' for a managed identity:
-- https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-manage-azure-ad-users
-- Its table privileges come from grant-app-role.sql (membership in coremachine_app).
-- psql variables: app_role (the Function app's name), app_object_id (its identity's object id).
SET coremachine.app_role = :'app_role';
SET coremachine.app_object_id = :'app_object_id';

DO $$
DECLARE
  app_role text := current_setting('coremachine.app_role');
  app_object_id text := current_setting('coremachine.app_object_id');
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = app_role) THEN
    PERFORM pgaadauth_create_principal_with_oid(app_role, app_object_id, 'service', false, false);
  END IF;

  -- Deployments made before issue 21 made the app's identity a server administrator. azd never
  -- deletes a resource the template dropped, so that administrator entry stays until removed.
  IF EXISTS (
    SELECT 1 FROM pg_roles
    WHERE rolname = app_role AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)
  ) OR (
    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'azure_pg_admin')
    AND pg_has_role(app_role, 'azure_pg_admin', 'MEMBER')
  ) THEN
    RAISE EXCEPTION 'role "%" is a server administrator: remove the app''s Microsoft Entra administrator entry (az postgres flexible-server microsoft-entra-admin delete -g <resource group> -s <server> -i %), DROP ROLE "%" if it remains, then azd provision again', app_role, app_object_id, app_role;
  END IF;
END
$$;
