-- HSM keys are stored under a digest only the HSM can compute, so a miss of the native key
-- table (keyed by the pepper digest, which is not stored for them) finds them by their
-- display prefix instead: `tg_<env>_` and the first 6 random characters, already stored and
-- listed for every key. This index holds only HSM keys; ordinary keys are found by key_hash.
CREATE INDEX api_keys_hsm_prefix ON api_keys (prefix) WHERE hash_scheme <> 'hmac-sha256';
