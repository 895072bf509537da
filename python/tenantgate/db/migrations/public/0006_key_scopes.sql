-- Least privilege per key: the scopes a key may use (all by default) and the source networks
-- it may be used from (empty: anywhere). Checked on every request from the cached key record.
ALTER TABLE api_keys ADD COLUMN scopes text[] NOT NULL DEFAULT ARRAY[
    'items:read', 'items:write', 'files:read', 'files:write', 'cache:read', 'cache:write',
    'audit:read'];
ALTER TABLE api_keys ADD COLUMN allowed_cidrs cidr[] NOT NULL DEFAULT '{}';
