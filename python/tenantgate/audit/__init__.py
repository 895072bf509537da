"""The tamper-evident audit log: what is recorded, appending to hash chains, verifying them.

- :mod:`~tenantgate.audit.records` — :class:`AuditEvent` (what happened) and the canonical
  fields a record's hash covers.
- :mod:`~tenantgate.audit.log` — appending events to their chains inside a transaction
  (serialised per chain, so a chain never forks), and reading records back.
- :mod:`~tenantgate.audit.writer` — a bounded queue written in batches, off the request path.
- :mod:`~tenantgate.audit.middleware` — which requests are recorded.
- :mod:`~tenantgate.audit.verify` — recomputing every chain (and checking it against the seals).
- :mod:`~tenantgate.audit.digest`, :mod:`~tenantgate.audit.seal`,
  :mod:`~tenantgate.audit.seal_check` — the chains' heads sealed under S3 Object Lock, and
  the log checked against them.

The hashes are the Rust core's (:func:`tenantgate._native.audit_record_hash`).

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from tenantgate.audit.log import append, append_as_tenant, record_change
from tenantgate.audit.records import OPERATOR_CHAIN, AuditEvent, event_of
from tenantgate.audit.verify import VerifyReport, verify
from tenantgate.audit.writer import AuditWriter

__all__ = [
    "OPERATOR_CHAIN",
    "AuditEvent",
    "AuditWriter",
    "VerifyReport",
    "append",
    "append_as_tenant",
    "event_of",
    "record_change",
    "verify",
]
