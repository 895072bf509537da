-- A rotated key names its successor: it is no longer "due" (GET /admin/v1/keys/due, `tenantgate
-- keys rotate-due`) while it lives out its grace period, so a daily rotation run rotates each
-- key once.
ALTER TABLE api_keys ADD COLUMN replaced_by uuid REFERENCES api_keys (id) ON DELETE SET NULL;
