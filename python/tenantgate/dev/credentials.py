"""Random per-data-dir credentials, persisted in ``<data dir>/credentials.json`` (mode 0600).

Re-running on the same data dir reuses the same passwords and keys, so an initialised
PostgreSQL cluster, a SoftHSM2 token or SeaweedFS identities stay usable. The file is read and
written under an exclusive ``flock`` so servers preparing in parallel threads (or processes)
never overwrite each other's entries.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["CREDENTIALS_FILE", "Credentials", "random_password"]

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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir / ".credentials.lock"
        with _thread_lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                values = self._read()
                value = values.get(name)
                if value is None:
                    value = factory()
                    values[name] = value
                    self._write(values)
                return value
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
