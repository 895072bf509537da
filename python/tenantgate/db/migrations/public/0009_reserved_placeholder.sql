-- PLACEHOLDER on branch audit-seal only: version 0009 belongs to branch hsm-keys
-- (0009_hsm_key_prefix.sql), and versions must be contiguous. Drop this file when merging
-- (that branch brings the real 0009). Version 0008 went to main's tenant_item_read.
SELECT 1;
