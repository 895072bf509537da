-- The audit log: append-only and hash-chained (a chain per tenant, and "-" for operator
-- actions and callers no tenant was found for). The application role, which owns it, may
-- INSERT and SELECT only: its other privileges are revoked, and triggers refuse UPDATE, DELETE
-- and TRUNCATE even to the owner. Triggers stop accidents, not a superuser: `tenantgate audit
-- verify` recomputes the chains and finds an edited, missing or reordered record.
CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    chain       text NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 1),
    at          timestamptz NOT NULL,
    tenant_id   uuid,
    key_id      uuid,
    actor       text NOT NULL CHECK (actor IN ('admin', 'tenant', 'system')),
    source_ip   text,
    method      text NOT NULL,
    path        text NOT NULL,
    status      integer NOT NULL,
    request_id  text,
    operation   jsonb NOT NULL,
    prev_hash   bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea NOT NULL CHECK (length(hash) = 32),
    UNIQUE (chain, seq)
);
CREATE INDEX audit_log_newest ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_tenant_newest ON audit_log (tenant_id, at DESC, id DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_log FROM CURRENT_USER;

-- Tenants read their own records as their own role (GET /v1/audit runs in the tenant's
-- transaction): row-level security decides, forced on the owner too, so even a query without
-- a WHERE clause sees one tenant's rows. The service role reads and appends everything.
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_log_service_reads ON audit_log FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY audit_log_service_appends ON audit_log FOR INSERT TO CURRENT_USER
    WITH CHECK (true);
CREATE POLICY audit_log_tenant_reads ON audit_log FOR SELECT TO PUBLIC
    USING (tenant_id IS NOT NULL AND current_user = 'tg_' || replace(tenant_id::text, '-', ''));
GRANT SELECT ON audit_log TO PUBLIC;
