"""Embedded HSM: a SoftHSM2 token in the data folder (Debian package ``softhsm2``).

No server process: ``<data>/hsm/softhsm2.conf`` points ``directories.tokendir`` at
``<data>/hsm/tokens`` (``objectstore.backend = file``) and a token labelled ``tenantgate`` is
initialised once with a random user PIN and SO PIN (kept in ``credentials.json``).

A PKCS#11 library reads ``SOFTHSM2_CONF`` when it is initialised, once per process: set
``os.environ["SOFTHSM2_CONF"] = str(info.conf_path)`` before the first ``pkcs11.lib(...)``
(the test fixture ``hsm_info`` does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tenantgate.dev.credentials import Credentials
from tenantgate.errors import EmbeddedServerError

__all__ = ["EmbeddedHsm", "HsmInfo", "softhsm_library", "softhsm_util"]

TOKEN_LABEL = "tenantgate"  # noqa: S105 - a label, not a secret
_LIBRARY_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class HsmInfo:
    library_path: str
    token_label: str
    pin: str
    so_pin: str
    conf_path: Path  # the SOFTHSM2_CONF file


def softhsm_library() -> Path | None:
    """The SoftHSM2 PKCS#11 module, if installed (``SOFTHSM2_LIB`` overrides)."""
    override = os.environ.get("SOFTHSM2_LIB")
    candidates = [override] if override else []
    candidates += list(_LIBRARY_CANDIDATES)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def softhsm_util() -> Path | None:
    found = shutil.which("softhsm2-util")
    return Path(found) if found else None


class EmbeddedHsm:
    """A SoftHSM2 token in ``<data_dir>/hsm``; ``start()`` initialises it if needed."""

    name = "softhsm2"

    def __init__(self, data_dir: Path, *, token_label: str = TOKEN_LABEL) -> None:
        self.data_dir = data_dir
        self.folder = data_dir / "hsm"
        self.conf_path = self.folder / "softhsm2.conf"
        self.token_dir = self.folder / "tokens"
        self.token_label = token_label
        creds = Credentials(data_dir)
        self.pin = creds.get("hsm_pin")
        self.so_pin = creds.get("hsm_so_pin")
        self._info: HsmInfo | None = None

    @property
    def running(self) -> bool:
        """A token needs no process: "running" means initialised and usable."""
        return self._info is not None

    @property
    def info(self) -> HsmInfo:
        if self._info is None:
            raise EmbeddedServerError(self.name, "not started")
        return self._info

    def _util(self, *args: str) -> str:
        util = softhsm_util()
        if util is None:
            raise EmbeddedServerError(self.name, "softhsm2-util is not installed")
        env = dict(os.environ, SOFTHSM2_CONF=str(self.conf_path))
        try:
            done = subprocess.run(  # noqa: S603 - argv built by us, no shell
                [str(util), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(self.name, f"softhsm2-util failed: {exc}") from exc
        if done.returncode != 0:
            raise EmbeddedServerError(
                self.name, f"softhsm2-util {args[0]} failed: {(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def token_labels(self) -> list[str]:
        labels = []
        for line in self._util("--show-slots").splitlines():
            key, _, value = line.strip().partition(":")
            if key.strip() == "Label" and value.strip():
                labels.append(value.strip())
        return labels

    def start(self) -> HsmInfo:
        library = softhsm_library()
        if library is None:
            raise EmbeddedServerError(self.name, "libsofthsm2.so is not installed")
        self.token_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.conf_path.write_text(
            f"directories.tokendir = {self.token_dir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        if self.token_label not in self.token_labels():
            self._util(
                "--init-token",
                "--free",
                "--label",
                self.token_label,
                "--pin",
                self.pin,
                "--so-pin",
                self.so_pin,
            )
            if self.token_label not in self.token_labels():
                raise EmbeddedServerError(self.name, "token was not created")
        self._info = HsmInfo(
            library_path=str(library),
            token_label=self.token_label,
            pin=self.pin,
            so_pin=self.so_pin,
            conf_path=self.conf_path,
        )
        return self._info

    def stop(self) -> None:
        """Nothing runs; the token stays on disk for the next start."""
        self._info = None

    def restart(self) -> HsmInfo:
        self.stop()
        return self.start()
