"""Each tenant's files are walled off by S3 itself: through the API a tenant sees only its
own files, and with a tenant's own S3 credentials nothing of another tenant can be read,
written or listed. Enterprise tenants have a bucket of their own; standard tenants share one,
each under its own prefix."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from storage_helpers import as_tenant, buckets, s3_error, shared_key, tenant_keys

pytestmark = pytest.mark.servers

DENIED = {"AccessDenied", "403"}


def _put(service: Any, tenant: Any, path: str, body: bytes, kind: str = "text/plain") -> Any:
    return service.put(
        f"/v1/files/{path}", content=body, headers={**tenant.headers, "Content-Type": kind}
    )


# -- through the API -------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["standard", "enterprise"])
def test_a_tenant_stores_reads_lists_and_deletes_its_own_files(
    tier: str, make_tenant: Any, service: Any
) -> None:
    tenant = make_tenant(tier=tier)
    stored = _put(service, tenant, "docs/report.csv", b"a,b\n1,2\n", "text/csv")
    assert stored.status_code == 201, stored.text
    assert stored.json()["path"] == "docs/report.csv"
    assert stored.json()["size"] == 8
    assert stored.json()["etag"]

    got = service.get("/v1/files/docs/report.csv", headers=tenant.headers)
    assert got.status_code == 200
    assert got.content == b"a,b\n1,2\n"
    assert got.headers["content-type"] == "text/csv"

    _put(service, tenant, "other.bin", b"\x00\x01", "application/octet-stream")
    listed = service.get("/v1/files", params={"prefix": "docs/"}, headers=tenant.headers)
    assert listed.status_code == 200
    assert [f["path"] for f in listed.json()["files"]] == ["docs/report.csv"]
    everything = service.get("/v1/files", headers=tenant.headers).json()["files"]
    assert sorted(f["path"] for f in everything) == ["docs/report.csv", "other.bin"]
    assert all(f["last_modified"].endswith("Z") for f in everything)

    assert service.delete("/v1/files/docs/report.csv", headers=tenant.headers).status_code == 204
    assert service.get("/v1/files/docs/report.csv", headers=tenant.headers).status_code == 404
    assert service.delete("/v1/files/docs/report.csv", headers=tenant.headers).status_code == 404


@pytest.mark.parametrize(
    ("tier_a", "tier_b"),
    [("standard", "standard"), ("enterprise", "standard"), ("standard", "enterprise")],
)
def test_another_tenant_cannot_get_list_overwrite_or_delete_a_tenants_files(
    tier_a: str, tier_b: str, make_tenant: Any, service: Any
) -> None:
    a, b = make_tenant(tier=tier_a), make_tenant(tier=tier_b)
    assert _put(service, a, "secret.txt", b"a's secret").status_code == 201

    assert service.get("/v1/files/secret.txt", headers=b.headers).status_code == 404
    assert service.get("/v1/files", headers=b.headers).json() == {"files": []}
    assert service.delete("/v1/files/secret.txt", headers=b.headers).status_code == 404
    assert _put(service, b, "secret.txt", b"b's own").status_code == 201  # b's own file

    got = service.get("/v1/files/secret.txt", headers=a.headers)
    assert got.content == b"a's secret"
    assert service.get("/v1/files/secret.txt", headers=b.headers).content == b"b's own"
    # Paths that would climb out of the tenant's prefix are refused before S3 is asked.
    escape = f"%2E%2E/{a.id}/secret.txt"
    assert service.get(f"/v1/files/{escape}", headers=b.headers).status_code == 422


# -- where the objects are -------------------------------------------------------------------


def test_enterprise_objects_sit_in_their_own_bucket_and_standard_ones_share_one(
    make_tenant: Any, service: Any, s3_settings: Any, service_settings: Any
) -> None:
    standard_1, standard_2 = make_tenant(), make_tenant()
    enterprise = make_tenant(tier="enterprise")
    for tenant in (standard_1, standard_2, enterprise):
        assert _put(service, tenant, "f.txt", tenant.id.encode()).status_code == 201

    admin = s3_settings.client()
    names = buckets(service_settings)
    own = names.tenant(uuid.UUID(enterprise.id))
    assert len(own) <= 63
    assert own in {b["Name"] for b in admin.list_buckets()["Buckets"]}
    assert admin.get_object(Bucket=own, Key="f.txt")["Body"].read() == enterprise.id.encode()
    for tenant in (standard_1, standard_2):
        key = shared_key(tenant.id, "f.txt")
        assert admin.get_object(Bucket=names.shared, Key=key)["Body"].read() == tenant.id.encode()
    shared_keys = {o["Key"] for o in admin.list_objects_v2(Bucket=names.shared).get("Contents", [])}
    assert not any(key.startswith(enterprise.id) for key in shared_keys)


# -- with a tenant's own S3 credentials ------------------------------------------------------


def test_a_standard_tenants_credentials_reach_only_its_own_prefix(
    make_tenant: Any,
    service: Any,
    s3_settings: Any,
    service_settings: Any,
    service_environment: dict[str, str],
) -> None:
    a, b = make_tenant(), make_tenant()
    enterprise = make_tenant(tier="enterprise")
    _put(service, b, "b.txt", b"b's")
    _put(service, enterprise, "e.txt", b"e's")
    client = as_tenant(s3_settings, tenant_keys(service_environment, service_settings, a.id))
    shared = buckets(service_settings).shared
    own_bucket = buckets(service_settings).tenant(uuid.UUID(enterprise.id))

    client.put_object(Bucket=shared, Key=shared_key(a.id, "mine.txt"), Body=b"a's")
    assert (
        client.get_object(Bucket=shared, Key=shared_key(a.id, "mine.txt"))["Body"].read() == b"a's"
    )
    listed = client.list_objects_v2(Bucket=shared, Prefix=shared_key(a.id, ""))
    assert [o["Key"] for o in listed["Contents"]] == [shared_key(a.id, "mine.txt")]

    b_key = shared_key(b.id, "b.txt")
    for refused in (
        lambda: client.get_object(Bucket=shared, Key=b_key),
        lambda: client.head_object(Bucket=shared, Key=b_key),
        lambda: client.put_object(Bucket=shared, Key=b_key, Body=b"overwritten"),
        lambda: client.put_object(Bucket=shared, Key=shared_key(b.id, "new"), Body=b"x"),
        lambda: client.delete_object(Bucket=shared, Key=b_key),
        lambda: client.list_objects_v2(Bucket=shared, Prefix=shared_key(b.id, "")),
        lambda: client.list_objects_v2(Bucket=shared),
        lambda: client.list_objects_v2(Bucket=shared, Prefix=""),
        lambda: client.put_object(Bucket=shared, Key="outside.txt", Body=b"x"),
        lambda: client.get_object(Bucket=own_bucket, Key="e.txt"),
        lambda: client.list_objects_v2(Bucket=own_bucket),
        lambda: client.put_object(Bucket=own_bucket, Key="e.txt", Body=b"x"),
        lambda: client.create_bucket(Bucket="tenantgate-stolen"),
        lambda: client.delete_bucket(Bucket=shared),
    ):
        assert s3_error(refused) in DENIED
    assert service.get("/v1/files/b.txt", headers=b.headers).content == b"b's"
    assert service.get("/v1/files/e.txt", headers=enterprise.headers).content == b"e's"


def test_an_enterprise_tenants_credentials_reach_only_its_own_bucket(
    make_tenant: Any,
    service: Any,
    s3_settings: Any,
    service_settings: Any,
    service_environment: dict[str, str],
) -> None:
    e1, e2, standard = (
        make_tenant(tier="enterprise"),
        make_tenant(tier="enterprise"),
        make_tenant(),
    )
    _put(service, e2, "x.txt", b"e2's")
    _put(service, standard, "s.txt", b"s's")
    client = as_tenant(s3_settings, tenant_keys(service_environment, service_settings, e1.id))
    names = buckets(service_settings)
    own, other = names.tenant(uuid.UUID(e1.id)), names.tenant(uuid.UUID(e2.id))

    client.put_object(Bucket=own, Key="x.txt", Body=b"e1's")
    assert [o["Key"] for o in client.list_objects_v2(Bucket=own)["Contents"]] == ["x.txt"]
    for refused in (
        lambda: client.get_object(Bucket=other, Key="x.txt"),
        lambda: client.put_object(Bucket=other, Key="x.txt", Body=b"overwritten"),
        lambda: client.delete_object(Bucket=other, Key="x.txt"),
        lambda: client.list_objects_v2(Bucket=other),
        lambda: client.list_objects_v2(Bucket=names.shared),
        lambda: client.get_object(Bucket=names.shared, Key=shared_key(standard.id, "s.txt")),
        lambda: client.delete_bucket(Bucket=own),
    ):
        assert s3_error(refused) in DENIED
    assert service.get("/v1/files/x.txt", headers=e2.headers).content == b"e2's"
    assert service.get("/v1/files/x.txt", headers=e1.headers).content == b"e1's"
