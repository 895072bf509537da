"""Sealed chain heads: digests in a bucket under S3 Object Lock (compliance mode) that nobody —
the S3 administrator included — can delete or replace, linked to one another, and what lets
`audit verify` find a chain a superuser rewrote with every hash recomputed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import botocore.exceptions
import pytest

from tenantgate._native import audit_record_hash
from tenantgate.audit import AuditEvent, append, verify
from tenantgate.audit.digest import decode_digest
from tenantgate.audit.records import canonical_fields
from tenantgate.audit.seal import AuditSealer
from tenantgate.cli.audit import run_seal, run_verify
from tenantgate.db import Database
from tenantgate.errors import ConflictError, HsmUnavailableError
from tenantgate.settings import Settings
from tenantgate.storage import open_storage

pytestmark = pytest.mark.servers


class _Lines:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)


@pytest.fixture
def environ(service_environment: dict[str, str], scratch_database: Any) -> dict[str, str]:
    """Settings of a service on the scratch database, sealing into an audit bucket of its own
    (each test's seals stay for a day: nobody can remove them sooner), with no HSM: these
    seals are unsigned (signed ones: test_seal_signatures.py)."""
    return {
        **{k: v for k, v in service_environment.items() if not k.startswith("TENANTGATE_PKCS11")},
        "TENANTGATE_DATABASE_URL": scratch_database.service_url,
        "TENANTGATE_S3_BUCKET_PREFIX": f"seal-{secrets.token_hex(4)}",
        "TENANTGATE_AUDIT_RETENTION_DAYS": "1",
    }


@asynccontextmanager
async def _sealer(
    environ: dict[str, str], signer: Any = None
) -> AsyncIterator[tuple[Database, AuditSealer]]:
    settings = Settings.from_env(environ)
    async with asyncpg.create_pool(settings.database.url, min_size=0, max_size=4) as pool:
        database = Database(pool)
        async with open_storage(settings, database) as storage:
            yield database, AuditSealer(database, storage, settings.audit, signer=signer)


def _with_sealer(
    environ: dict[str, str], work: Callable[[Database, AuditSealer], Any], signer: Any = None
) -> Any:
    async def run() -> Any:
        async with _sealer(environ, signer) as (database, sealer):
            return await work(database, sealer)

    return asyncio.run(run())


async def _append(database: Database, tenant: uuid.UUID | None, count: int) -> None:
    events = [
        AuditEvent(
            actor="tenant" if tenant else "admin",
            method="POST",
            path=f"/v1/items/{n}",
            status=201,
            tenant_id=tenant,
            operation={"n": str(n)},
        )
        for n in range(count)
    ]
    async with database.transaction() as connection:
        await append(connection, events)


async def _superuser(url: str, *statements: str) -> list[Any]:
    connection: Any = await asyncpg.connect(url)
    try:
        return [await connection.fetch(statement) for statement in statements]
    finally:
        await connection.close()


def _cli(run: Callable[..., int], environ: dict[str, str]) -> tuple[int, dict[str, Any]]:
    out = _Lines()
    status = run(environ=environ, stdout=out, stderr=_Lines())
    return status, json.loads(out.text)


def test_a_seal_cannot_be_deleted_or_replaced_even_by_the_s3_administrator(
    environ: dict[str, str], s3_settings: Any
) -> None:
    _with_sealer(environ, lambda database, _: _append(database, uuid.uuid4(), 3))
    status, seal = _cli(run_seal, environ)
    assert status == 0, seal
    bucket = f"{environ['TENANTGATE_S3_BUCKET_PREFIX']}-audit"
    key, version = seal["key"], seal["version_id"]
    admin = s3_settings.client()
    original = admin.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    assert hashlib.sha256(original).hexdigest() == seal["digest_sha256"]

    def refused(call: Callable[[], Any]) -> str:
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            call()
        return str(caught.value.response["Error"]["Code"])

    assert refused(lambda: admin.delete_object(Bucket=bucket, Key=key, VersionId=version)) == (
        "AccessDenied"
    )
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(minutes=1)}
    assert (
        refused(
            lambda: admin.put_object_retention(
                Bucket=bucket, Key=key, VersionId=version, Retention=shorter
            )
        )
        == "AccessDenied"
    )
    # What S3 does allow: a delete marker on top, and a new version on top (a forged digest
    # whose head would fail the check, were it read instead of the first version).
    admin.delete_object(Bucket=bucket, Key=key)
    forged = json.loads(original)
    forged["chains"][0]["head_hash"] = "00" * 32
    admin.put_object(Bucket=bucket, Key=key, Body=json.dumps(forged).encode())
    refused(lambda: admin.delete_bucket(Bucket=bucket))

    kept = admin.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    assert kept == original
    status, report = _cli(run_verify, environ)
    assert status == 0, report
    assert report["ok"]
    assert report["seals_checked"] == 1


def _rewrite_with_recomputed_hashes(superuser_url: str, chain: str, from_seq: int) -> None:
    """What a superuser can do behind the triggers' back: change a record, then recompute every
    hash after it, so the chain recomputes cleanly."""

    async def rewrite() -> None:
        connection: Any = await asyncpg.connect(superuser_url)
        try:
            await connection.execute("SET session_replication_role = replica")
            rows = await connection.fetch(
                "SELECT id, chain, seq, at, tenant_id, key_id, actor, source_ip, method, path, "
                "status, request_id, operation::text AS operation, prev_hash, hash "
                "FROM audit_log WHERE chain = $1 ORDER BY seq",
                chain,
            )
            previous = bytes(rows[from_seq - 2]["hash"]) if from_seq > 1 else bytes(32)
            for row in rows[from_seq - 1 :]:
                status = 204 if row["seq"] == from_seq else row["status"]
                fields = canonical_fields(
                    row["id"], row["chain"], row["seq"], row["at"], row["tenant_id"],
                    row["key_id"], row["actor"], row["source_ip"], row["method"], row["path"],
                    status, row["request_id"], json.loads(row["operation"]),
                )  # fmt: skip
                current = audit_record_hash(previous, fields)
                await connection.execute(
                    "UPDATE audit_log SET status = $1, prev_hash = $2, hash = $3 WHERE id = $4",
                    status,
                    previous,
                    current,
                    row["id"],
                )
                previous = current
        finally:
            await connection.close()

    asyncio.run(rewrite())


def test_verify_finds_a_chain_rewritten_with_recomputed_hashes_only_thanks_to_the_seal(
    environ: dict[str, str], scratch_database: Any
) -> None:
    tenant = uuid.uuid4()

    async def write_and_seal(database: Database, sealer: AuditSealer) -> Any:
        await _append(database, tenant, 6)
        await _append(database, None, 2)
        return await sealer.seal_now()

    _with_sealer(environ, write_and_seal)
    (rows,) = asyncio.run(
        _superuser(
            scratch_database.superuser_url,
            f"SELECT seq, id FROM audit_log WHERE chain = '{tenant}' ORDER BY seq",
        )
    )
    sealed_head = rows[-1]["id"]
    _rewrite_with_recomputed_hashes(scratch_database.superuser_url, str(tenant), from_seq=3)

    async def both(database: Database, sealer: AuditSealer) -> tuple[Any, Any]:
        return await verify(database), await verify(database, sealer)

    chains_only, with_seals = _with_sealer(environ, both)
    assert chains_only.ok, "the chains alone cannot see a rewrite with recomputed hashes"
    assert not with_seals.ok
    assert with_seals.first_bad == sealed_head
    assert "sealed" in (with_seals.problem or "")
    status, report = _cli(run_verify, environ)
    assert status == 1
    assert report["first_bad"] == str(sealed_head)
    assert report["seals_checked"] == 1


def test_seals_form_a_chain_of_their_own_and_one_sealer_seals_at_a_time(
    environ: dict[str, str], scratch_database: Any
) -> None:
    tenant = uuid.uuid4()

    async def seal_three(database: Database, sealer: AuditSealer) -> Any:
        for count in (2, 3, 1):
            await _append(database, tenant, count)
            await sealer.seal_now()
        return await sealer.read_all()

    digests = [decode_digest(sealed.body) for sealed in _with_sealer(environ, seal_three)]
    bodies = [sealed.body for sealed in _with_sealer(environ, lambda _, s: s.read_all())]
    assert [digest.seq for digest in digests] == [1, 2, 3]
    assert digests[0].prev_digest_sha256 is None
    assert digests[0].from_ is None
    for earlier, later, body in zip(digests, digests[1:], bodies, strict=False):
        assert later.prev_digest_sha256 == hashlib.sha256(body).hexdigest()
        assert later.from_ == earlier.to
    assert [digest.chains[0].count for digest in digests] == [2, 5, 6]

    async def while_locked(database: Database, sealer: AuditSealer) -> Any:
        holder: Any = await asyncpg.connect(scratch_database.superuser_url)
        try:
            await holder.execute("SELECT pg_advisory_lock($1, 0)", 0x7467_7365)
            assert await sealer.seal() is None
            with pytest.raises(ConflictError):
                await sealer.seal_now()
        finally:
            await holder.close()

    _with_sealer(environ, while_locked)


def test_a_digest_written_but_not_remembered_is_adopted_not_overwritten(
    environ: dict[str, str], scratch_database: Any
) -> None:
    async def seal_once(database: Database, sealer: AuditSealer) -> Any:
        await _append(database, None, 1)
        return await sealer.seal_now()

    first = _with_sealer(environ, seal_once)
    asyncio.run(_superuser(scratch_database.superuser_url, "DELETE FROM audit_seals"))
    second = _with_sealer(environ, seal_once)
    assert (first.seq, second.seq) == (1, 2)
    stored = _with_sealer(environ, lambda _, sealer: sealer.read_all())
    assert [item.stored.later_versions for item in stored] == [0, 0]
    assert decode_digest(stored[1].body).prev_digest_sha256 == first.digest_sha256


def test_the_admin_api_seals_and_verifies_against_the_seals(
    service: Any, admin_headers: dict[str, str], make_tenant: Any
) -> None:
    tenant = make_tenant()
    # A tenant's change commits with its audit record: its chain is there to seal.
    assert service.post("/v1/items", json={"data": {}}, headers=tenant.headers).status_code == 201
    sealed = service.post("/admin/v1/audit/seal", headers=admin_headers)
    assert sealed.status_code == 201, sealed.text
    body = sealed.json()
    assert body["key"].startswith("digests/")
    assert body["chains"] >= 1
    assert body["retain_until"] > body["sealed_at"]
    report = service.post("/admin/v1/audit/verify", headers=admin_headers)
    assert report.status_code == 200, report.text
    assert report.json()["ok"]
    assert report.json()["seals_checked"] >= 1


def test_instances_seal_periodically_one_at_a_time(
    environ: dict[str, str], scratch_database: Any
) -> None:
    from litestar.testing import TestClient

    from tenantgate.app import create_app

    settings = Settings.from_env({**environ, "TENANTGATE_AUDIT_SEAL_INTERVAL_SECONDS": "1"})
    _with_sealer(environ, lambda database, _: _append(database, None, 1))

    async def seals() -> list[Any]:
        (rows,) = await _superuser(
            scratch_database.superuser_url, "SELECT seq, sealed_at FROM audit_seals ORDER BY seq"
        )
        return rows

    with TestClient(create_app(settings)), TestClient(create_app(settings)):
        for _ in range(600):  # until three seals are written, however slow the box
            if len(rows := asyncio.run(seals())) >= 3:
                break
            time.sleep(0.1)
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    # Two instances, each looking every second, and still one seal per interval at most.
    gaps = [
        later["sealed_at"] - earlier["sealed_at"] for earlier, later in itertools.pairwise(rows)
    ]
    assert all(gap >= timedelta(seconds=1) for gap in gaps), gaps
    report = _with_sealer(environ, verify)
    assert report.ok, report.problem
    assert report.seals_checked >= 3


class _HmacSigner:
    key_name = "test-hmac"

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)

    def sign(self, data: bytes) -> bytes:
        return hmac.digest(self.key, data, "sha256")


def test_a_signer_signs_each_digest_into_its_metadata(environ: dict[str, str]) -> None:
    signer = _HmacSigner()

    async def seal_signed(database: Database, sealer: AuditSealer) -> Any:
        await _append(database, None, 1)
        await sealer.seal_now()
        return await sealer.read_all()

    (stored,) = _with_sealer(environ, seal_signed, signer)
    assert stored.metadata["signature-key"] == "test-hmac"
    assert stored.metadata["signature"] == signer.sign(stored.body).hex()
    assert stored.metadata["digest-sha256"] == hashlib.sha256(stored.body).hexdigest()


class _BrokenSigner:
    key_name = "broken"

    def sign(self, data: bytes) -> bytes:
        raise HsmUnavailableError("the token is gone")


def test_a_failed_periodic_seal_is_counted_in_the_metrics_and_logged(
    environ: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    from litestar.testing import TestClient

    from tenantgate.app import create_app
    from tenantgate.plugin import TenantGatePlugin

    settings = Settings.from_env({**environ, "TENANTGATE_AUDIT_SEAL_INTERVAL_SECONDS": "1"})
    _with_sealer(environ, lambda database, _: _append(database, None, 1))
    plugin = TenantGatePlugin(settings, audit_signer=_BrokenSigner())
    with TestClient(create_app(plugin=plugin)) as client:
        for _ in range(300):  # the sealer looks every second; however slow the box
            if plugin.seal_counts.failures:
                break
            time.sleep(0.1)
        failures = plugin.seal_counts.failures
        metrics = client.get("/metrics").text
    assert failures >= 1
    (line,) = (m for m in metrics.splitlines() if m.startswith("tenantgate_audit_seal_failures_"))
    assert line.startswith("tenantgate_audit_seal_failures_total ")
    assert float(line.split()[1]) >= failures
    assert "sealing the audit log failed" in capfd.readouterr().err
