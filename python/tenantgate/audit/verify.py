"""Recomputing every audit chain: the first record that is not what its chain says.

Each chain is read in order (``seq``). A record is bad when a number is missing before it (a
record was deleted), when it does not hold the previous record's hash (records were reordered
or one was replaced), or when its content does not hash to its ``hash`` (it was edited). The
chains need no secret to recompute, so someone able to rewrite the table *and* every hash after
an edit, or to remove a chain's last records, is not caught by the chains alone: given the
:class:`~tenantgate.audit.seal.AuditSealer`, :func:`verify` then checks the log against the
sealed chain heads too (:mod:`tenantgate.audit.seal_check`), which catches that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import msgspec

from tenantgate.audit.log import GENESIS, RECORD_COLUMNS
from tenantgate.audit.records import canonical_fields
from tenantgate.audit.seal_check import check_seals
from tenantgate.core import implementation as _core

if TYPE_CHECKING:
    from tenantgate.audit.seal import AuditSealer
    from tenantgate.db.database import Database

__all__ = ["VerifyReport", "verify"]

_ALL_IN_CHAIN_ORDER: Final = f"SELECT {RECORD_COLUMNS} FROM public.audit_log ORDER BY chain, seq"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome: whether every chain holds, how many records were checked, and the first
    bad record with what is wrong with it."""

    ok: bool
    checked: int
    first_bad: UUID | None = None
    problem: str | None = None
    seals_checked: int = 0
    """How many sealed digests the log was checked against (0 without a sealer)."""


async def verify(database: Database, sealer: AuditSealer | None = None) -> VerifyReport:
    """Recompute every chain (in one read-only transaction, a consistent snapshot), then,
    with a ``sealer``, check the log against every sealed digest (and each digest's signature
    when the sealer's signer can check one)."""
    report = await _verify_chains(database)
    if not report.ok or sealer is None:
        return report
    seals = await check_seals(database, await sealer.read_all(), sealer.signature_checker)
    return VerifyReport(
        seals.ok, report.checked, seals.first_bad, seals.problem, seals_checked=seals.seals_checked
    )


async def _verify_chains(database: Database) -> VerifyReport:
    checked = 0
    chain: str | None = None
    expected_seq, previous = 1, GENESIS
    async with database.transaction() as connection:
        await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        async for row in connection.cursor(_ALL_IN_CHAIN_ORDER, prefetch=1000):
            if row["chain"] != chain:
                chain, expected_seq, previous = row["chain"], 1, GENESIS
            checked += 1
            problem = _problem(row, expected_seq, previous)
            if problem is not None:
                return VerifyReport(False, checked, row["id"], problem)
            previous = bytes(row["hash"])
            expected_seq += 1
    return VerifyReport(True, checked)


def _problem(record: Any, expected_seq: int, previous: bytes) -> str | None:
    """What is wrong with ``record`` (an ``asyncpg.Record``), or None."""
    seq: int = record["seq"]
    if seq != expected_seq:
        return f"record {expected_seq} of chain {record['chain']!r} is missing"
    if bytes(record["prev_hash"]) != previous:
        return "it does not hold the previous record's hash (reordered or replaced)"
    fields = canonical_fields(
        record["id"], record["chain"], seq, record["at"], record["tenant_id"],
        record["key_id"], record["actor"], record["source_ip"], record["method"],
        record["path"], record["status"], record["request_id"],
        msgspec.json.decode(record["operation"]),
    )  # fmt: skip
    if _core.audit_record_hash(previous, fields) != bytes(record["hash"]):
        return "its content does not match its hash (edited)"
    return None
