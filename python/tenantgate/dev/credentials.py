"""Random per-data-dir credentials, persisted in ``<data dir>/credentials.json`` (mode 0600).

The one secret store of the development stack: the embedded servers' passwords and keys, and
the secrets of the ``tenantgate serve`` that ``tenantgate dev`` runs on them
(:class:`ServiceSecrets`, and the demo tenant's key). Re-running on the same data dir reuses
them, so an initialised PostgreSQL cluster, a SoftHSM2 token, SeaweedFS identities and the
API keys made earlier stay usable. The file is read and written under an exclusive ``flock``
so servers preparing in parallel threads (or processes) never overwrite each other's entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

__all__ = ["CREDENTIALS_FILE", "DEMO_API_KEY", "Credentials", "ServiceSecrets", "random_password"]

CREDENTIALS_FILE = "credentials.json"

_thread_lock = threading.Lock()


def random_password(nbytes: int = 24) -> str:
    """A random secret made of ``[0-9a-f]`` only: safe in URLs, config files and shells."""
    return secrets.token_hex(nbytes)


class Credentials:
    """The credentials file of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / CREDENTIALS_FILE

    def get(self, name: str, factory: Callable[[], str] = random_password) -> str:
        """The stored value of ``name``, created with ``factory()`` and saved if absent."""
        with self._locked() as values:
            value = values.get(name)
            if value is None:
                value = factory()
                values[name] = value
                self._write(values)
            return value

    def find(self, name: str) -> str | None:
        """The stored value of ``name``, or ``None``."""
        with self._locked() as values:
            return values.get(name)

    def put(self, name: str, value: str) -> None:
        """Store ``value`` as ``name``, replacing what was there."""
        with self._locked() as values:
            values[name] = value
            self._write(values)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        """The stored values, read under the thread lock and the file lock."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir / ".credentials.lock"
        with _thread_lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield self._read()
            finally:
                os.close(fd)

    def _read(self) -> dict[str, str]:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{self.path} does not hold a JSON object")
        return {str(k): str(v) for k, v in data.items()}

    def _write(self, values: dict[str, str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(values, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


DEMO_API_KEY = "demo_api_key"
"""The credentials entry of the demo tenant's key (``tenantgate dev --demo``)."""


@dataclass(frozen=True, slots=True, repr=False)
class ServiceSecrets:
    """The secrets of a ``tenantgate serve`` on the embedded stack, kept in the credentials
    file (``service_*`` entries) so a restart keeps every API key and login working."""

    admin_token: str
    key_pepper_hex: str
    postgres_password: str
    """The password of the service's own PostgreSQL login (not the superuser's)."""

    @classmethod
    def load_or_create(
        cls, data_dir: Path, environ: Mapping[str, str] = os.environ
    ) -> ServiceSecrets:
        """Each secret from ``data_dir``'s credentials, made on first use.

        ``TENANTGATE_ADMIN_TOKEN`` in ``environ``, when set, is the admin token instead of
        the stored one.
        """
        credentials = Credentials(data_dir)
        _adopt_legacy_folder(credentials)
        return cls(
            admin_token=environ.get("TENANTGATE_ADMIN_TOKEN", "").strip()
            or credentials.get("service_admin_token", lambda: secrets.token_urlsafe(32)),
            key_pepper_hex=credentials.get("service_key_pepper", lambda: secrets.token_hex(32)),
            postgres_password=credentials.get("service_postgres_password"),
        )

    def environment(self) -> dict[str, str]:
        """The service's ``TENANTGATE_*`` settings holding these secrets."""
        return {
            "TENANTGATE_ADMIN_TOKEN": self.admin_token,
            "TENANTGATE_KEY_PEPPER": self.key_pepper_hex,
        }

    def __repr__(self) -> str:
        return "ServiceSecrets(...)"


def _adopt_legacy_folder(credentials: Credentials) -> None:
    """Move the secrets an earlier ``tenantgate dev`` kept as files in ``<data dir>/service/``
    into the credentials file, then delete that folder: a data dir made before this store
    keeps its admin token, its API keys (the pepper) and its demo key."""
    folder = credentials.data_dir / "service"
    if not folder.is_dir():
        return
    for name in ("admin_token", "key_pepper", "postgres_password", DEMO_API_KEY):
        path = folder / name
        if path.is_file():
            entry = name if name == DEMO_API_KEY else f"service_{name}"
            if credentials.find(entry) is None:
                credentials.put(entry, path.read_text(encoding="ascii").strip())
    shutil.rmtree(folder)
