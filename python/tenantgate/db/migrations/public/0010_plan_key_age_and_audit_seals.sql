-- Plans may bound how long their tenants' keys live: a key made without an expiry gets this
-- many days, a longer one is refused, and a rotation's successor gets at most this many.
-- NULL: no bound (keys may live for ever, as before).
ALTER TABLE plans ADD COLUMN max_key_age_days integer
    CHECK (max_key_age_days BETWEEN 1 AND 3650);

-- The audit seals written so far, as the sealer remembers them: the previous digest's hash
-- and time for the next one, and the interval between instances. Only a memory: the digests
-- themselves are in the locked audit bucket, and `audit verify` reads them from there.
CREATE TABLE audit_seals (
    seq            bigint PRIMARY KEY CHECK (seq >= 1),
    sealed_at      timestamptz NOT NULL,
    object_key     text NOT NULL,
    version_id     text NOT NULL,
    digest_sha256  text NOT NULL,
    chains         integer NOT NULL
);
