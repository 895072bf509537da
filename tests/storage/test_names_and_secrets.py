"""Bucket names are valid on AWS whatever the tenant id, the bucket prefix setting is checked
at start-up with a message naming it, and a stored S3 secret opens only with the service's
pepper, for its own tenant and key."""

from __future__ import annotations

import re
import uuid

import pytest

from tenantgate.errors import SettingsError
from tenantgate.naming import BucketNames, TenantNames
from tenantgate.settings import Settings
from tenantgate.storage.placement import placement_of
from tenantgate.storage.sealing import SealedSecretError, seal, unseal

AWS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
BASE = {
    "TENANTGATE_DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db",
    "TENANTGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
    "TENANTGATE_ADMIN_TOKEN": "x" * 20,
    "TENANTGATE_KEY_PEPPER": "ab" * 16,
}


@pytest.mark.parametrize("prefix", ["tenantgate", "a", "acme-prod-eu-1", "z" * 29])
def test_every_bucket_name_is_valid_on_aws(prefix: str) -> None:
    names = BucketNames(prefix)
    for name in (names.shared, names.tenant(uuid.uuid4())):
        assert AWS_BUCKET.match(name), name
        assert "--" not in name
        assert len(name) <= 63


@pytest.mark.parametrize("prefix", ["", "UPPER", "a_b", "-a", "a-", "a--b", "a.b", "z" * 30])
def test_a_bad_bucket_prefix_stops_start_up_naming_the_variable(prefix: str) -> None:
    environ = {**BASE, "TENANTGATE_S3_BUCKET_PREFIX": prefix}
    if prefix == "":
        assert Settings.from_env(environ).s3.bucket_prefix == "tenantgate"  # unset: the default
        return
    with pytest.raises(SettingsError, match="TENANTGATE_S3_BUCKET_PREFIX"):
        Settings.from_env(environ)


def test_placements() -> None:
    tenant = uuid.uuid4()
    names = TenantNames.of(tenant)
    buckets = BucketNames("acme")
    standard = placement_of(names, "standard", buckets)
    assert (standard.bucket, standard.key_prefix) == ("acme-shared", f"{tenant}/")
    assert standard.key("a/b") == f"{tenant}/a/b"
    enterprise = placement_of(names, "enterprise", buckets)
    assert (enterprise.bucket, enterprise.key_prefix) == (f"acme-{tenant.hex}", "")
    # Every grant of a prefix ends in `*` (SeaweedFS silently grants nothing otherwise).
    assert f'"arn:aws:s3:::acme-shared/{tenant}/*"' in standard.policy_document()
    assert f'"s3:prefix":["{tenant}/*"]' in standard.policy_document()


def test_a_sealed_secret_opens_only_for_its_tenant_key_and_pepper() -> None:
    pepper, tenant = b"p" * 32, uuid.uuid4()
    sealed = seal(pepper, tenant, "AKIA1", "s3cr3t")
    assert b"s3cr3t" not in sealed
    assert unseal(pepper, tenant, "AKIA1", sealed) == "s3cr3t"
    for wrong in (
        lambda: unseal(b"q" * 32, tenant, "AKIA1", sealed),
        lambda: unseal(pepper, uuid.uuid4(), "AKIA1", sealed),
        lambda: unseal(pepper, tenant, "AKIA2", sealed),
        lambda: unseal(pepper, tenant, "AKIA1", sealed[:-1] + bytes([sealed[-1] ^ 1])),
    ):
        with pytest.raises(SealedSecretError):
            wrong()
    assert seal(pepper, tenant, "AKIA1", "s3cr3t") != sealed  # a fresh nonce each time
