"""Seals signed in the HSM (SoftHSM2 here) and checked by `audit verify`: a signed seal
verifies; a digest added to the bucket by someone who can write to it — consistent with the
digests before it, but with a forged signature or none — is named as bad."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tenantgate.audit import AuditEvent, append, verify
from tenantgate.audit.digest import Digest, decode_digest, digest_key, encode_digest, sha256_hex
from tenantgate.audit.seal import AuditSealer
from tenantgate.audit.seal_signer import SEAL_KEY_LABEL, HsmSealSigner
from tenantgate.cli.audit import run_seal, run_verify
from tenantgate.db import Database
from tenantgate.settings import Settings
from tenantgate.storage import StorageService, open_storage
from tenantgate.storage.locked_bucket import put_locked

pytestmark = [pytest.mark.servers, pytest.mark.hsm]


@pytest.fixture
def environ(
    service_environment: dict[str, str], scratch_database: Any, hsm_info: Any
) -> dict[str, str]:
    """A service on the scratch database with the session's SoftHSM2 token, sealing into an
    audit bucket of its own."""
    assert "TENANTGATE_PKCS11_LIB" in service_environment
    return {
        **service_environment,
        "TENANTGATE_DATABASE_URL": scratch_database.service_url,
        "TENANTGATE_S3_BUCKET_PREFIX": f"signed-{secrets.token_hex(4)}",
        "TENANTGATE_AUDIT_RETENTION_DAYS": "1",
    }


@asynccontextmanager
async def _stack(
    environ: dict[str, str],
) -> AsyncIterator[tuple[Database, StorageService, AuditSealer]]:
    settings = Settings.from_env(environ)
    assert settings.hsm is not None
    signer = HsmSealSigner(settings.hsm)
    try:
        async with asyncpg.create_pool(settings.database.url, min_size=0, max_size=4) as pool:
            database = Database(pool)
            async with open_storage(settings, database) as storage:
                yield (
                    database,
                    storage,
                    AuditSealer(database, storage, settings.audit, signer=signer),
                )
    finally:
        signer.close()


def _run(environ: dict[str, str], work: Callable[..., Any]) -> Any:
    async def run() -> Any:
        async with _stack(environ) as (database, storage, sealer):
            return await work(database, storage, sealer)

    return asyncio.run(run())


async def _append(database: Database) -> None:
    event = AuditEvent(actor="admin", method="POST", path="/admin/x", status=201, operation={})
    async with database.transaction() as connection:
        await append(connection, [event])


async def _add_next_digest(
    storage: StorageService, sealer: AuditSealer, metadata: dict[str, str]
) -> str:
    """What someone with write access to the bucket can do: add the next digest, linked to the
    last one and naming the same heads, with whatever metadata they like."""
    last = (await sealer.read_all())[-1]
    previous = decode_digest(last.body)
    body = encode_digest(
        Digest(
            format=previous.format,
            seq=previous.seq + 1,
            from_=previous.to,
            to=previous.to + timedelta(seconds=1),
            prev_digest_sha256=sha256_hex(last.body),
            chains=previous.chains,
        )
    )
    key = digest_key(previous.seq + 1)
    retain_until = datetime.now(UTC) + timedelta(days=1)
    await storage.blocking.run(
        put_locked, storage.s3, sealer.bucket, key, body, retain_until, metadata
    )
    return key


def test_a_signed_seal_verifies_and_its_key_stays_in_the_hsm(
    environ: dict[str, str], hsm_info: Any
) -> None:
    async def seal_and_verify(database: Database, _: Any, sealer: AuditSealer) -> Any:
        await _append(database)
        await sealer.seal_now()
        return await sealer.read_all(), await verify(database, sealer)

    (stored,), report = _run(environ, seal_and_verify)
    assert stored.metadata["signature-key"] == SEAL_KEY_LABEL
    assert len(bytes.fromhex(stored.metadata["signature"])) == 32
    assert report.ok, report.problem
    assert report.seals_checked == 1

    import pkcs11  # the `hsm` extra: missing, this fails rather than skips
    from pkcs11 import Attribute
    from pkcs11.exceptions import AttributeSensitive, UserAlreadyLoggedIn

    token = pkcs11.lib(hsm_info.library_path).get_token(token_label=hsm_info.token_label)
    try:
        session = token.open(user_pin=hsm_info.pin)
    except UserAlreadyLoggedIn:  # another session holds this process's login
        session = token.open()
    with session:
        key = session.get_key(label=SEAL_KEY_LABEL)
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]


@pytest.mark.parametrize(
    ("forgery", "problem"),
    [
        ({"signature": "00" * 32, "signature-key": SEAL_KEY_LABEL}, "does not verify"),
        ({}, "not signed"),
        ({"signature": "00" * 32, "signature-key": "someone-else"}, "signed with the key"),
    ],
    ids=["forged", "unsigned", "other-key"],
)
def test_a_digest_added_with_a_forged_or_missing_signature_is_found(
    environ: dict[str, str], forgery: dict[str, str], problem: str
) -> None:
    async def seal_then_forge(database: Database, storage: Any, sealer: AuditSealer) -> Any:
        await _append(database)
        await sealer.seal_now()
        key = await _add_next_digest(storage, sealer, forgery)
        return key, await verify(database, sealer)

    key, report = _run(environ, seal_then_forge)
    assert not report.ok
    assert report.problem is not None
    assert report.problem.startswith(f"seal {key}:"), report.problem
    assert problem in report.problem


def test_the_cli_signs_and_checks_signatures_with_the_hsm(environ: dict[str, str]) -> None:
    class Lines:
        text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

    def cli(run: Callable[..., int]) -> tuple[int, dict[str, Any]]:
        out = Lines()
        status = run(environ=environ, stdout=out, stderr=Lines())
        return status, json.loads(out.text)

    _run(environ, lambda database, *_: _append(database))
    status, sealed = cli(run_seal)
    assert status == 0, sealed
    status, report = cli(run_verify)
    assert (status, report["ok"], report["seals_checked"]) == (0, True, 1), report

    forged = {"signature": secrets.token_hex(32), "signature-key": SEAL_KEY_LABEL}
    _run(environ, lambda _, storage, sealer: _add_next_digest(storage, sealer, forged))
    status, report = cli(run_verify)
    assert status != 0
    assert not report["ok"]
    assert "does not verify" in report["problem"]
