-- The `database` Redis placement: the tenant's own logical Redis database, allocated at
-- provisioning (NULL: the `namespace` placement, database 0). Unique while the tenant row
-- exists, so a number is never given to a second tenant before the first is gone.
ALTER TABLE tenants ADD COLUMN redis_database integer CHECK (redis_database >= 1);
CREATE UNIQUE INDEX tenants_redis_database ON tenants (redis_database)
    WHERE redis_database IS NOT NULL;
