"""The embedded servers answer for real and enforce what tenant isolation builds on.

PostgreSQL: TCP + password, superuser. Redis: password on the default user, ACL users confined
to their key pattern. S3: no anonymous access, prefix-scoped identities created at runtime, no
bucket auto-creation. SoftHSM2: a non-extractable HMAC key. Life cycle: restart on the same
port keeps data, stop leaves no process, a dead parent takes its servers with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from typing import TYPE_CHECKING, Any

import boto3
import psutil
import pytest
import redis
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from redis.backoff import NoBackoff
from redis.retry import Retry

from tenantgate.dev import (
    Credentials,
    EmbeddedRedis,
    EmbeddedStack,
    ManagedProcess,
    ServiceSecrets,
)
from tenantgate.errors import EmbeddedServerError

if TYPE_CHECKING:
    from pathlib import Path

    from tenantgate.dev import HsmInfo, StackInfo

    from ..conftest import S3Settings

pytestmark = pytest.mark.servers


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def _fetch(url: str, query: str, *args: Any) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


# -- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_answers_a_query_as_superuser(postgres_admin_url: str) -> None:
    assert postgres_admin_url.startswith("postgresql://postgres:")
    assert "@127.0.0.1:" in postgres_admin_url
    assert asyncio.run(_fetch(postgres_admin_url, "select 40 + 2")) == 42
    assert asyncio.run(
        _fetch(postgres_admin_url, "select rolsuper from pg_roles where rolname = current_user")
    )
    assert int(asyncio.run(_fetch(postgres_admin_url, "show max_connections"))) >= 300
    assert asyncio.run(_fetch(postgres_admin_url, "show listen_addresses")) == "127.0.0.1"
    assert asyncio.run(_fetch(postgres_admin_url, "show server_version")).startswith("18")


def test_postgres_refuses_a_wrong_password(postgres_admin_url: str) -> None:
    import asyncpg

    _, _, rest = postgres_admin_url.removeprefix("postgresql://").partition("@")
    wrong = f"postgresql://postgres:not-the-password@{rest}"
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(_fetch(wrong, "select 1"))


# -- Redis --------------------------------------------------------------------------------


def test_redis_admin_can_set_and_get_and_has_10000_databases(
    redis_admin_url: str, stack_info: StackInfo
) -> None:
    client = redis.Redis.from_url(redis_admin_url)
    try:
        key = f"stack-test:{uuid.uuid4()}"
        client.set(key, b"value", ex=60)
        assert client.get(key) == b"value"
        assert client.config_get("databases") == {"databases": "10000"}
        assert stack_info.redis_databases == 10_000
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("save") == {"save": ""}
    finally:
        client.close()
    last = redis.Redis.from_url(redis_admin_url.rsplit("/", 1)[0] + "/9999")
    try:
        assert last.ping() is True
    finally:
        last.close()


def test_redis_refuses_unauthenticated_clients(redis_admin_url: str) -> None:
    host_port = redis_admin_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    no_retry = Retry(NoBackoff(), 0)  # redis-py retries AuthenticationError by default
    anonymous = redis.Redis(host=host, port=int(port), retry=no_retry)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("anything")
    finally:
        anonymous.close()
    wrong = redis.Redis(
        host=host, port=int(port), username="default", password="wrong", retry=no_retry
    )
    try:
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
    finally:
        wrong.close()


def test_redis_acl_user_is_confined_to_its_namespace(redis_admin_url: str) -> None:
    tenant, other = uuid.uuid4().hex, uuid.uuid4().hex
    user, password = f"t-{tenant}", uuid.uuid4().hex
    admin = redis.Redis.from_url(redis_admin_url)
    host, port = redis_admin_url.split("@", 1)[1].split("/", 1)[0].split(":")
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}",
        f"~t:{{{tenant}}}:*", f"&t:{{{tenant}}}:*", "+@all", "-@dangerous",
        "-select", "-keys", "-scan", "-randomkey", "-flushdb", "-flushall",
    )  # fmt: skip
    scoped = redis.Redis(host=host, port=int(port), username=user, password=password)
    try:
        own, foreign = f"t:{{{tenant}}}:k", f"t:{{{other}}}:k"
        admin.set(foreign, b"secret")
        scoped.set(own, b"mine")
        assert scoped.get(own) == b"mine"
        with pytest.raises(redis.exceptions.NoPermissionError):
            scoped.get(foreign)
        with pytest.raises(redis.exceptions.NoPermissionError):
            scoped.set(foreign, b"overwritten")
        with pytest.raises(redis.exceptions.NoPermissionError):
            scoped.keys("*")
        with pytest.raises(redis.exceptions.NoPermissionError):
            scoped.execute_command("SELECT", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            scoped.flushdb()
        assert admin.get(foreign) == b"secret"
    finally:
        scoped.close()
        admin.delete(f"t:{{{tenant}}}:k", f"t:{{{other}}}:k")
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


# -- S3 -----------------------------------------------------------------------------------


def test_s3_refuses_anonymous_requests(s3_settings: S3Settings) -> None:
    admin = s3_settings.client()
    admin.create_bucket(Bucket="anon-check")
    admin.put_object(Bucket="anon-check", Key="k", Body=b"private")
    anonymous = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_settings.endpoint_url,
        region_name=s3_settings.region,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    for call in (
        lambda: anonymous.list_buckets(),
        lambda: anonymous.get_object(Bucket="anon-check", Key="k"),
        lambda: anonymous.put_object(Bucket="anon-check", Key="k2", Body=b"x"),
        lambda: anonymous.create_bucket(Bucket="anon-made"),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert _error_code(caught.value) == "AccessDenied"
    unknown = s3_settings.client("NOSUCHKEY0000", "nosuchsecret000")
    with pytest.raises(ClientError) as caught:
        unknown.list_buckets()
    assert _error_code(caught.value) == "InvalidAccessKeyId"


def test_s3_config_file_holds_only_the_admin_identity(s3_settings: S3Settings) -> None:
    path = s3_settings.config_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    identities = json.loads(path.read_text())["identities"]
    assert len(identities) == 1
    assert identities[0]["credentials"][0]["accessKey"] == s3_settings.access_key_id
    assert set(identities[0]["actions"]) == {"Admin", "Read", "Write", "List", "Tagging"}


def test_s3_admin_round_trip_and_no_bucket_auto_creation(s3_settings: S3Settings) -> None:
    admin = s3_settings.client()
    admin.create_bucket(Bucket="admin-round-trip")
    admin.put_object(Bucket="admin-round-trip", Key="a/b.txt", Body=b"hello")
    assert admin.get_object(Bucket="admin-round-trip", Key="a/b.txt")["Body"].read() == b"hello"
    with pytest.raises(ClientError) as caught:
        admin.put_object(Bucket="never-created-bucket", Key="x", Body=b"x")
    assert _error_code(caught.value) == "NoSuchBucket"
    names = {b["Name"] for b in admin.list_buckets()["Buckets"]}
    assert "admin-round-trip" in names
    assert "never-created-bucket" not in names


def test_s3_prefix_identity_created_at_runtime_is_confined(
    embedded_stack: EmbeddedStack, s3_settings: S3Settings
) -> None:
    s3 = embedded_stack.s3
    admin = s3_settings.client()
    admin.create_bucket(Bucket="scoped-bucket")
    admin.put_object(Bucket="scoped-bucket", Key="q/other.txt", Body=b"not yours")
    actions = ["Read:scoped-bucket/p/*", "Write:scoped-bucket/p/*", "List:scoped-bucket/p/*"]
    s3.put_identity("tenant-p", "TENANTPKEY01", "tenant-p-secret-01", actions)
    try:
        tenant = s3_settings.client("TENANTPKEY01", "tenant-p-secret-01")
        tenant.put_object(Bucket="scoped-bucket", Key="p/mine.txt", Body=b"mine")
        assert tenant.get_object(Bucket="scoped-bucket", Key="p/mine.txt")["Body"].read() == b"mine"
        listed = tenant.list_objects_v2(Bucket="scoped-bucket", Prefix="p/")
        assert [o["Key"] for o in listed["Contents"]] == ["p/mine.txt"]
        for call in (
            lambda: tenant.put_object(Bucket="scoped-bucket", Key="q/evil.txt", Body=b"x"),
            lambda: tenant.get_object(Bucket="scoped-bucket", Key="q/other.txt"),
            lambda: tenant.list_objects_v2(Bucket="scoped-bucket", Prefix="q/"),
            lambda: tenant.create_bucket(Bucket="tenant-made-bucket"),
            lambda: tenant.put_object(Bucket="admin-made-elsewhere", Key="p/x", Body=b"x"),
        ):
            with pytest.raises(ClientError) as caught:
                call()
            assert _error_code(caught.value) in {"AccessDenied", "NoSuchBucket"}
        with pytest.raises(ClientError) as caught:
            tenant.put_object(Bucket="scoped-bucket", Key="q/evil.txt", Body=b"x")
        assert _error_code(caught.value) == "AccessDenied"
        assert "tenant-p" in s3.identity_names()

        # Replacing the identity's grants takes effect on the running gateway.
        s3.put_identity(
            "tenant-p", "TENANTPKEY01", "tenant-p-secret-01", ["Read:scoped-bucket/q/*"]
        )
        assert tenant.get_object(Bucket="scoped-bucket", Key="q/other.txt")["Body"].read()
        with pytest.raises(ClientError) as caught:
            tenant.put_object(Bucket="scoped-bucket", Key="p/again.txt", Body=b"x")
        assert _error_code(caught.value) == "AccessDenied"
    finally:
        s3.remove_identity("tenant-p")
    with pytest.raises(ClientError) as caught:
        tenant.get_object(Bucket="scoped-bucket", Key="p/mine.txt")
    assert _error_code(caught.value) == "InvalidAccessKeyId"
    assert "tenant-p" not in s3.identity_names()


def test_s3_put_identity_refuses_a_prefix_grant_without_wildcard(
    embedded_stack: EmbeddedStack,
) -> None:
    with pytest.raises(ValueError, match="must end in"):
        embedded_stack.s3.put_identity("bad", "BADKEY0001", "bad-secret-01", ["Read:b/p/"])
    with pytest.raises(ValueError, match="invalid action"):
        embedded_stack.s3.put_identity("bad", "BADKEY0001", "bad-secret-01", ["Everything"])


# -- HSM ----------------------------------------------------------------------------------


@pytest.mark.hsm
def test_hsm_hmac_key_is_usable_but_not_readable(hsm_info: HsmInfo) -> None:
    pkcs11 = pytest.importorskip("pkcs11")
    from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag
    from pkcs11.exceptions import AttributeSensitive, NoSuchToken, UserAlreadyLoggedIn

    assert os.environ["SOFTHSM2_CONF"] == str(hsm_info.conf_path)
    lib = pkcs11.lib(hsm_info.library_path)
    try:
        token = lib.get_token(token_label=hsm_info.token_label)
    except NoSuchToken:
        # The library was initialised in this process before the token existed (an earlier
        # test's token); SoftHSM reads its token directory only then.
        lib.reinitialize()
        token = lib.get_token(token_label=hsm_info.token_label)
    try:
        session = token.open(user_pin=hsm_info.pin, rw=True)
    except UserAlreadyLoggedIn:  # the service's HSM session (earlier tests) holds the login
        session = token.open(rw=True)
    with session:
        key = session.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            label="stack-test-hmac",
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True},
        )
        mac = key.sign(b"tg_test_key", mechanism=Mechanism.SHA256_HMAC)
        assert len(mac) == 32
        assert key.sign(b"tg_test_key", mechanism=Mechanism.SHA256_HMAC) == mac
        assert key.sign(b"other", mechanism=Mechanism.SHA256_HMAC) != mac
        assert key.verify(b"tg_test_key", mac, mechanism=Mechanism.SHA256_HMAC)
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]
    # A wrong PIN, checked by a process of its own: this one may hold the service's login
    # (PKCS#11 logins are per process), and then no PIN is checked at all.
    wrong_pin = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pkcs11\n"
            "token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])\n"
            "try:\n"
            "    token.open(user_pin='0000')\n"
            "except pkcs11.exceptions.PinIncorrect:\n"
            "    sys.exit(3)\n",
            hsm_info.library_path,
            hsm_info.token_label,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert wrong_pin.returncode == 3, wrong_pin.stderr


# -- credentials and life cycle -----------------------------------------------------------


def test_credentials_file_is_private(embedded_stack: EmbeddedStack) -> None:
    path = embedded_stack.data_dir / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["postgres_password"] in embedded_stack.info.postgres_admin_url
    assert stored["redis_password"] in embedded_stack.info.redis_admin_url
    assert stored["s3_secret_access_key"] == embedded_stack.info.s3_secret_access_key


def _process_tree(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid} | {child.pid for child in proc.children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_restart_keeps_port_and_data_and_stop_leaves_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "lifecycle"
    stack = EmbeddedStack(data_dir, hsm=False, fast=True)
    try:
        info = stack.start()
        url = info.postgres_admin_url
        asyncio.run(_fetch(url, "create table kept as select 'survives'::text as v"))
        pg_port = stack.postgres.port
        redis_port = stack.redis.port
        old_pid = stack.postgres.pid

        stack.postgres.restart()
        assert stack.postgres.running
        assert stack.postgres.port == pg_port
        assert stack.postgres.pid != old_pid
        assert stack.postgres.admin_url == url
        assert asyncio.run(_fetch(url, "select v from kept")) == "survives"

        stack.redis.stop()
        assert not stack.redis.running
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(info.redis_admin_url, socket_connect_timeout=1).ping()
        stack.redis.start()
        assert stack.redis.port == redis_port
        assert redis.Redis.from_url(info.redis_admin_url).ping() is True

        pids: set[int] = set()
        for pid in stack.pids().values():
            pids |= _process_tree(pid)
        assert len(pids) >= 4  # postgres has background workers
    finally:
        stack.stop()
    deadline = time.monotonic() + 5
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(pids) == set()
    assert not stack.postgres.running
    assert not stack.redis.running
    assert not stack.s3.running
    stack.stop()  # idempotent

    # Re-running on the same data dir reuses the cluster and its credentials.
    again = EmbeddedStack(data_dir, hsm=False, fast=True)
    try:
        info2 = again.start()
        assert info2.s3_secret_access_key == info.s3_secret_access_key
        assert asyncio.run(_fetch(info2.postgres_admin_url, "select v from kept")) == "survives"
    finally:
        again.stop()


def test_start_failure_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: clients are refused at once
        server = EmbeddedRedis(tmp_path / "busy", port=taken.getsockname()[1])
        server.ready_timeout = 10
        with pytest.raises(EmbeddedServerError) as caught:
            server.start()
        assert caught.value.server == "redis"
        assert not server.running


def test_servers_die_with_their_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from tenantgate.dev import EmbeddedRedis
        server = EmbeddedRedis(Path({str(tmp_path / "orphan")!r}))
        server.start()
        print(server.pid, flush=True)
        os._exit(0)  # no clean-up at all: the kernel's parent-death signal must do it
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(done.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 5
    while _alive({pid}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive({pid}) == set()


# -- the service's secrets and its process, as `tenantgate dev` runs it ---------------------


def test_credentials_find_put_and_get(tmp_path: Path) -> None:
    credentials = Credentials(tmp_path)
    assert credentials.find("demo_api_key") is None
    credentials.put("demo_api_key", "first")
    credentials.put("demo_api_key", "second")
    assert credentials.find("demo_api_key") == "second"
    assert credentials.get("demo_api_key", lambda: "unused") == "second"
    assert stat.S_IMODE(os.stat(tmp_path / "credentials.json").st_mode) == 0o600


def test_service_secrets_persist_in_the_one_store_and_the_admin_token_from_env_wins(
    tmp_path: Path,
) -> None:
    first = ServiceSecrets.load_or_create(tmp_path, environ={})
    again = ServiceSecrets.load_or_create(tmp_path, environ={})
    assert again == first
    assert len(bytes.fromhex(first.key_pepper_hex)) == 32
    stored = json.loads((tmp_path / "credentials.json").read_text())
    assert stored["service_admin_token"] == first.admin_token
    assert stored["service_key_pepper"] == first.key_pepper_hex
    assert stored["service_postgres_password"] == first.postgres_password
    assert first.admin_token not in repr(first)

    chosen = ServiceSecrets.load_or_create(
        tmp_path, environ={"TENANTGATE_ADMIN_TOKEN": " chosen-admin-token-0123 "}
    )
    assert chosen.admin_token == "chosen-admin-token-0123"
    assert chosen.key_pepper_hex == first.key_pepper_hex
    assert chosen.environment() == {
        "TENANTGATE_ADMIN_TOKEN": "chosen-admin-token-0123",
        "TENANTGATE_KEY_PEPPER": first.key_pepper_hex,
    }


def test_service_secrets_take_over_the_files_of_an_earlier_dev_server(tmp_path: Path) -> None:
    folder = tmp_path / "service"
    folder.mkdir()
    for name, value in [("key_pepper", "ab" * 32), ("admin_token", "kept-admin-token-0123")]:
        (folder / name).write_text(value + "\n")
    (folder / "demo_api_key").write_text("tg_live_kept\n")

    secrets = ServiceSecrets.load_or_create(tmp_path, environ={})

    assert secrets.key_pepper_hex == "ab" * 32
    assert secrets.admin_token == "kept-admin-token-0123"
    assert Credentials(tmp_path).find("demo_api_key") == "tg_live_kept"
    assert not folder.exists()


def test_a_process_without_a_log_file_writes_to_our_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    process = ManagedProcess(
        name="talker",
        argv=[sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
        log_path=None,
    )
    process.start()
    assert process.wait() == 0
    assert process.exit_reason() == "exited with code 0 (its output is above)"
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "out" in captured.err
    assert "err" in captured.err
    process.stop()
    assert list(tmp_path.iterdir()) == []
