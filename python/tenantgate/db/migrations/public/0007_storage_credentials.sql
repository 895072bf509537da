-- Each tenant's S3 identity: the access key the S3 server (IAM CreateAccessKey) made for it,
-- its secret sealed with AES-256-GCM under a key derived from the service's pepper
-- (tenantgate.storage.sealing). Written by the S3 provisioning step, read by the service to
-- sign the tenant's requests; gone with the tenant's row.
CREATE TABLE storage_credentials (
    tenant_id      uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    access_key_id  text NOT NULL CHECK (length(access_key_id) BETWEEN 1 AND 128),
    sealed_secret  bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
