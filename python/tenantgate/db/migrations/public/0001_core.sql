-- Shared tables. No name here may equal a tenant table's name: a tenant query must never fall
-- through its search_path to a table in public.
CREATE TABLE plans (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    rate_per_second double precision NOT NULL CHECK (rate_per_second > 0 AND rate_per_second < 1e9),
    burst           integer NOT NULL CHECK (burst >= 1),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (name, rate_per_second, burst) VALUES
    ('free', 10, 20),
    ('pro', 100, 200),
    ('enterprise', 1000, 2000);

CREATE TABLE tenants (
    id            uuid PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    plan          text NOT NULL REFERENCES plans (name),
    tier          text NOT NULL CHECK (tier IN ('standard', 'enterprise')),
    custom_domain text UNIQUE,
    schema_name   text NOT NULL UNIQUE,
    role_name     text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (custom_domain IS NULL OR tier = 'enterprise')
);
CREATE INDEX tenants_created_at_id ON tenants (created_at, id);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text,
    key_hash     bytea NOT NULL UNIQUE,
    hash_scheme  text NOT NULL,
    prefix       text NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant_id_created_at ON api_keys (tenant_id, created_at);
