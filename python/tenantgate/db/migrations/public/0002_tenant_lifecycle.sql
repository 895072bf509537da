-- Provisioning in steps: a tenant is `provisioning` from its registration until every step
-- (schema and role, migrations, first key; later the Redis user and S3 identity) is done, and
-- `deleting` while its steps are undone. Only `active` tenants are served; a tenant left in
-- either state by a crash is completed or removed by `tenantgate tenants repair` (and at
-- start-up).
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
    CHECK (status IN ('provisioning', 'active', 'suspended', 'deleting'));
ALTER TABLE tenants ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE INDEX tenants_unfinished ON tenants (status_changed_at)
    WHERE status IN ('provisioning', 'deleting');
