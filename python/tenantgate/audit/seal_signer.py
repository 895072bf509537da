"""Signing seals with a key in the HSM, and checking those signatures.

With an HSM configured (``TENANTGATE_PKCS11_*``), every sealed digest is signed with
HMAC-SHA-256 under a key generated inside the token — ``GENERIC_SECRET``, 256 bits,
``SENSITIVE``, not ``EXTRACTABLE``, labelled :data:`SEAL_KEY_LABEL`, made on first use, like
the API-key HMAC key of :mod:`tenantgate.hsm` but a key of its own (one key, one purpose). The
digests already link to one another by SHA-256, which needs no secret: someone who can write
to the audit bucket could rewrite the log, recompute every hash *and* add a new, consistent
digest after the last real one. The signature is what they cannot make without the token.

An HMAC is checked by computing it again (in the token) and comparing in constant time, so
checking needs the same token; a digest with no signature, another key's, or a wrong one is
named as bad by ``audit verify`` (:mod:`tenantgate.audit.seal_check`). HSM calls block: the
sealer and the checker run them in worker threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tenantgate.hsm import Hsm
from tenantgate.keys import constant_time_eq

if TYPE_CHECKING:
    from tenantgate.settings import HsmSettings

__all__ = ["SEAL_KEY_LABEL", "HsmSealSigner"]

SEAL_KEY_LABEL: Final = "tenantgate-audit-seal"
"""``CKA_LABEL`` of the seals' HMAC key in the token (also the ``signature-key`` of a seal)."""


class HsmSealSigner:
    """Signs and checks seal digests with the token's :data:`SEAL_KEY_LABEL` key."""

    __slots__ = ("hsm",)

    def __init__(self, settings: HsmSettings, *, key_label: str = SEAL_KEY_LABEL) -> None:
        self.hsm = Hsm(settings, key_label=key_label)
        """The token's session for this key (its own: the API keys' HMAC key has another)."""

    @property
    def key_name(self) -> str:
        return self.hsm.key_label

    def sign(self, data: bytes) -> bytes:
        """HMAC-SHA-256 of ``data`` in the token (raises ``HsmUnavailableError`` if it fails)."""
        return self.hsm.digest_blocking(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""
        return constant_time_eq(self.sign(data), signature)

    def close(self) -> None:
        self.hsm.close()
