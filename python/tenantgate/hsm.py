"""PKCS#11 keyed hashing: the HMAC key that anchors enterprise API keys marked ``hsm``.

**Why.** An ordinary key is stored as HMAC-SHA-256 under the server pepper: whoever holds a
database dump *and* the pepper can test guesses offline. An HSM key is stored as HMAC-SHA-256
computed *inside* a PKCS#11 token with a key that never leaves it (``GENERIC_SECRET``, 256
bits, ``SIGN``/``VERIFY``, ``SENSITIVE``, not ``EXTRACTABLE``, a ``TOKEN`` object labelled
:data:`HMAC_KEY_LABEL`): a dump plus the pepper test nothing; every guess needs the token.

**How a miss finds the record** (:mod:`tenantgate.identity.hsm_keys`). The native table is
keyed by the pepper digest, which is *not* stored for an HSM key (storing it would hand the
offline attacker exactly the test we mean to deny). The lookup index is the key's display
prefix (``tg_live_`` and its first 6 random characters), which is stored and listed for every
key anyway: it narrows the search to the HSM keys sharing those characters (almost always one),
and then the HSM computes the presented key's digest once and it is compared, in constant time,
with each candidate's. What the index reveals is what the listing already shows, 6 of the ≥ 30
random characters (~36 of ≥ 178 bits): the remaining ≥ 142 bits are still only testable
through the token.

**The trade-off of caching.** A match is cached in the native key table like any other key,
under its *pepper* digest (the table's only index), for the table's TTL, and its digest stays
in the process's "known good" set for the guessing brake (10 minutes, with its key id, so that
the key keeps working through an HSM outage). So after its first use
a key's pepper digest lives in the memory of the instances it was used on: an attacker who can
read that memory *and* has the pepper could test guesses against those digests while they are
there. We accept it: such an attacker already sees the keys themselves in the requests, and the
alternative, one HSM call per request, would put the token on every request's path (0.1 to
0.4 ms here, see the README's performance section) and make an HSM outage an outage of every
HSM key rather than of those not used lately.

**Sessions and threads.** The library is opened once per process and one logged-in session is
shared by every call, under a lock (many PKCS#11 libraries dislike concurrent logins from one
process). :meth:`Hsm.digest` runs the call on a thread of its own, so the event loop never waits
for the token; that thread also serialises the calls, which the session needs anyway.

**Failures.** Any failure of the library, the session or the token is an
:class:`~tenantgate.errors.HsmUnavailableError`. The session is then dropped and reopened by a
later call, at most once per :data:`REOPEN_INTERVAL_SECONDS` (calls in between fail at once
rather than each waiting on a dead token), and the reopening re-initialises the library first:
SoftHSM2 2.6 keeps answering ``CKR_GENERAL_ERROR`` for a token whose files went away and came
back until ``C_Finalize``/``C_Initialize`` (checked here).

**The key's birth.** The HMAC key is found by label, or generated on first use. ``tenantgate
serve`` makes sure it exists before it starts its workers (:func:`ensure_hmac_key`), so workers
never race to generate two; instances on several hosts starting together on a fresh token
could, so create it once (``tenantgate serve`` on one host, or ``tenantgate dev``) before
scaling out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

from tenantgate.errors import HsmUnavailableError

if TYPE_CHECKING:
    from tenantgate.settings import HsmSettings

__all__ = [
    "HMAC_KEY_LABEL",
    "HSM_HASH_SCHEME",
    "REOPEN_INTERVAL_SECONDS",
    "Hsm",
    "ensure_hmac_key",
]

HSM_HASH_SCHEME: Final = "hsm-hmac-sha256-v1"
"""``api_keys.hash_scheme`` of a key hashed by the HSM (ordinary keys: ``hmac-sha256``)."""

HMAC_KEY_LABEL: Final = "tenantgate-api-keys-v1"
"""``CKA_LABEL`` of the HMAC key in the token."""

REOPEN_INTERVAL_SECONDS: Final = 1.0
"""After a failure, how long calls fail at once before the session is opened again."""

_logger = logging.getLogger("tenantgate.hsm")


class Hsm:
    """One PKCS#11 token, one shared logged-in session, HMAC-SHA-256 with the key inside."""

    def __init__(
        self,
        settings: HsmSettings,
        *,
        key_label: str = HMAC_KEY_LABEL,
        reopen_interval: float = REOPEN_INTERVAL_SECONDS,
    ) -> None:
        self.settings = settings
        self.key_label = key_label
        self._reopen_interval = reopen_interval
        self._lock = threading.Lock()
        self._session: Any = None
        self._key: Any = None
        self._failed_at: float | None = None
        self._reinitialize = False
        self._thread: ThreadPoolExecutor | None = None
        self._mechanism: Any = None  # pkcs11.Mechanism.SHA256_HMAC, once the module is loaded
        self.failures = 0
        """HSM calls that failed (a counter for ``/metrics``)."""

    @property
    def library(self) -> str:
        return str(self.settings.library_path)

    async def digest(self, message: bytes) -> bytes:
        """HMAC-SHA-256 of ``message`` under the token's key, computed on the HSM's thread."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenantgate-hsm")
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self.digest_blocking, message
        )

    def digest_blocking(self, message: bytes) -> bytes:
        """:meth:`digest` in the calling thread (for start-up, the CLI and benches)."""
        with self._lock:
            key = self._usable_key()
            try:
                return bytes(key.sign(message, mechanism=self._mechanism))
            except Exception as exc:  # a broken session, a vanished token, a dead library
                raise self._broken(exc) from exc

    def ensure_key(self) -> None:
        """Open the session and find or generate the HMAC key now (raises if the HSM fails)."""
        with self._lock:
            self._usable_key()

    def close(self) -> None:
        """Close the session (logging out only if it logged in) and the HSM's thread."""
        with self._lock:
            self._drop_session()
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    # -- internals (called with the lock held) ------------------------------------------

    def _usable_key(self) -> Any:
        if self._key is not None:
            return self._key
        failed_at = self._failed_at
        if failed_at is not None and time.monotonic() - failed_at < self._reopen_interval:
            self.failures += 1
            raise HsmUnavailableError(
                f"it failed moments ago; tried again {self._reopen_interval:g} s after that"
            )
        try:
            self._open()
        except Exception as exc:
            raise self._broken(exc) from exc
        if self._failed_at is not None:
            _logger.warning("HSM session reopened on token %r", self.settings.token_label)
        self._failed_at = None
        return self._key

    def _open(self) -> None:
        try:
            import pkcs11
        except ImportError as exc:
            raise RuntimeError("python-pkcs11 is not installed (tenantgate[hsm])") from exc
        self._mechanism = pkcs11.Mechanism.SHA256_HMAC
        lib = pkcs11.lib(self.library)
        if self._reinitialize:
            # SoftHSM2 sees a token that went away and came back only after this.
            lib.reinitialize()
        token = lib.get_token(token_label=self.settings.token_label)
        try:
            session = token.open(user_pin=self.settings.pin, rw=True)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # Another session of this process logged in (login is per process): share it.
            session = token.open(rw=True)
        try:
            key = self._find_or_generate(session)
        except BaseException:
            session.close()
            raise
        self._session, self._key = session, key
        self._reinitialize = False

    def _find_or_generate(self, session: Any) -> Any:
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.exceptions import NoSuchKey

        try:
            return session.get_key(
                object_class=ObjectClass.SECRET_KEY,
                key_type=KeyType.GENERIC_SECRET,
                label=self.key_label,
            )
        except NoSuchKey:
            pass
        _logger.info("generating the HSM key %r", self.key_label)
        return session.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            label=self.key_label,
            id=secrets.token_bytes(16),
            store=True,
            template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.VERIFY: True,
                Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
            },
        )

    def _broken(self, exc: Exception) -> HsmUnavailableError:
        """Forget the session after ``exc``; the next call after the interval reopens it."""
        self.failures += 1
        if self._failed_at is None:
            _logger.error(
                "HSM token %r failed (%s): HSM keys it has not confirmed lately are refused",
                self.settings.token_label,
                _describe(exc),
            )
        self._failed_at = time.monotonic()
        self._reinitialize = True
        self._drop_session()
        return HsmUnavailableError(_describe(exc))

    def _drop_session(self) -> None:
        session, self._session, self._key = self._session, None, None
        if session is not None:
            try:
                session.close()
            except Exception as exc:  # already gone with its token or library
                _logger.debug("closing the HSM session: %s", _describe(exc))


def ensure_hmac_key(settings: HsmSettings, key_label: str = HMAC_KEY_LABEL) -> None:
    """Find or generate the HMAC key labelled ``key_label``, then release the library (before
    worker processes fork: a PKCS#11 library must not be carried across ``fork``). Raises
    :class:`~tenantgate.errors.HsmUnavailableError` if the HSM fails."""
    hsm = Hsm(settings, key_label=key_label)
    try:
        hsm.ensure_key()
    finally:
        hsm.close()
        with contextlib.suppress(ImportError):
            import pkcs11

            pkcs11.unload(hsm.library)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
