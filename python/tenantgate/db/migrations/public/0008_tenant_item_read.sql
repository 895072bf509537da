-- A tenant's read of one item in one round trip. A tenant transaction costs three
-- (BEGIN + SET LOCAL ROLE + SET LOCAL search_path; the SELECT; COMMIT); this function enters
-- the tenant itself, so the service calls it on its own, with no transaction around it.
-- The wall is the same one: set_config('role') is SET ROLE (PostgreSQL refuses a role the
-- service's login may not become), and the SELECT is planned and permission-checked after it,
-- as the tenant's role, in the tenant's schema. Both settings are put back before returning,
-- so a call inside a transaction leaves the transaction as it found it; after an error they
-- revert with the (sub)transaction. Owned by the service; nobody else may call it.
CREATE FUNCTION tenantgate_read_item(tenant_role text, tenant_schema text, item_id uuid)
RETURNS TABLE (id uuid, data text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    previous_role text := current_setting('role');
    previous_path text := current_setting('search_path');
BEGIN
    PERFORM set_config('role', tenant_role, true);
    PERFORM set_config('search_path', tenant_schema, true);
    RETURN QUERY
        SELECT i.id, i.data::text, i.created_at, i.updated_at FROM items AS i WHERE i.id = item_id;
    PERFORM set_config('search_path', previous_path, true);
    PERFORM set_config('role', previous_role, true);
END
$$;
REVOKE ALL ON FUNCTION tenantgate_read_item(text, text, uuid) FROM PUBLIC;
