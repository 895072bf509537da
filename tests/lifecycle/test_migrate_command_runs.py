"""`tenantgate migrate` as an operator runs it: killed half-way (SIGKILL) and run again, with
plain progress lines when its output is not a terminal, skipping tenants still provisioning,
and with tenant migrations taken from a folder."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from lifecycle_helpers import create_many, schema_shapes, schema_versions, wait_for_other_backends

from tenantgate.db.migrator import load_migrations_from, migrate_public
from tenantgate.naming import TenantNames

if TYPE_CHECKING:
    import uuid
    from pathlib import Path

    from tenantgate.tenancy.keyring import KeyIssuer

pytestmark = pytest.mark.servers

PROGRESS_LINE = re.compile(
    r"^tenantgate migrate: (\d+)/(\d+) tenant schemas "
    r"\(migrated (\d+), up to date (\d+), failed (\d+)\)$"
)
SUMMARY = re.compile(r"migrated (\d+), up to date (\d+), failed (\d+) of (\d+) tenant schemas")


def tenant_migrations(folder: Path, second: str) -> Path:
    """A migrations folder: the packaged version 1, copied, and ``second`` as version 2."""
    import tenantgate.db.migrations

    packaged = os.path.join(os.path.dirname(tenantgate.db.migrations.__file__), "tenant")
    folder.mkdir()
    for name in os.listdir(packaged):
        if name.endswith(".sql"):
            shutil.copy(os.path.join(packaged, name), folder / name)
    (folder / "0002_note.sql").write_text(second)
    return folder


def environment(database_url: str) -> dict[str, str]:
    clean = {
        name: value for name, value in os.environ.items() if not name.startswith("TENANTGATE_")
    }
    return clean | {
        "TENANTGATE_DATABASE_URL": database_url,
        # Settings `migrate` does not use but `Settings.from_env` requires.
        "TENANTGATE_REDIS_URL": "redis://127.0.0.1:1/0",
        "TENANTGATE_ADMIN_TOKEN": "admin-token-0123456789",
        "TENANTGATE_KEY_PEPPER": "00" * 32,
    }


def make_tenants(database_url: str, issuer: KeyIssuer, count: int) -> list[uuid.UUID]:
    async def make() -> list[uuid.UUID]:
        connection = await asyncpg.connect(database_url)
        try:
            await migrate_public(connection)
        finally:
            await connection.close()
        async with asyncpg.create_pool(database_url, min_size=0, max_size=4) as pool:
            return await create_many(pool, issuer, count, concurrency=4)

    return asyncio.run(make())


def migrate(database_url: str, folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantgate", "migrate", "--tenant-migrations", str(folder), *extra],
        env=environment(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_killed_half_way_is_finished_by_the_next_run_and_no_schema_twice(
    fresh_database: Any, key_issuer: KeyIssuer, tmp_path: Path
) -> None:
    count = 30
    make_tenants(fresh_database.url, key_issuer, count)
    # Slow on purpose, so the kill lands half-way whatever the machine's speed.
    folder = tenant_migrations(
        tmp_path / "migrations", "SELECT pg_sleep(0.05);\nALTER TABLE items ADD COLUMN note text;\n"
    )

    seen: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "migrate", "--tenant-migrations", str(folder),
         "--concurrency", "2"],
        env=environment(fresh_database.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as run:  # fmt: skip
        try:
            assert run.stderr is not None
            for line in run.stderr:
                seen.append(line.rstrip("\n"))
                match = PROGRESS_LINE.match(seen[-1])
                if match and int(match[1]) >= 10:
                    run.send_signal(signal.SIGKILL)
                    break
        finally:
            run.kill()
            run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL, f"not killed half-way; its output: {seen}"
    asyncio.run(wait_for_other_backends(fresh_database.admin_url, fresh_database.name))

    versions = asyncio.run(schema_versions(fresh_database.admin_url))
    at_2 = sum(1 for version in versions.values() if version == 2)
    at_1 = sum(1 for version in versions.values() if version == 1)
    assert at_1 + at_2 == count
    assert 10 <= at_2 < count
    # Each schema is migrated or not, never half-way: the column exists exactly at version 2.
    shapes = asyncio.run(schema_shapes(fresh_database.admin_url))
    for schema, version in versions.items():
        assert ("note text" in shapes[schema]) == (version == 2), schema

    finished = migrate(fresh_database.url, folder, "--concurrency", "4")
    assert finished.returncode == 0, finished.stderr
    summary = SUMMARY.search(finished.stderr)
    assert summary is not None, finished.stderr
    # The second run migrates exactly the schemas the first one had not finished.
    assert tuple(map(int, summary.groups())) == (at_1, at_2, 0, count)
    assert set(asyncio.run(schema_versions(fresh_database.admin_url)).values()) == {2}
    shapes = asyncio.run(schema_shapes(fresh_database.admin_url))
    assert len(set(shapes.values())) == 1, "tenant schemas differ in shape"


def test_progress_on_a_non_terminal_is_plain_lines(
    fresh_database: Any, key_issuer: KeyIssuer, tmp_path: Path
) -> None:
    count = 5
    make_tenants(fresh_database.url, key_issuer, count)
    folder = tenant_migrations(tmp_path / "migrations", "ALTER TABLE items ADD COLUMN note text;\n")

    result = migrate(fresh_database.url, folder)

    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr  # no bar
    assert "\x1b" not in result.stderr  # no colours
    lines = result.stderr.splitlines()
    progress = [PROGRESS_LINE.match(line) for line in lines[:-1]]
    assert all(progress), lines
    done = [int(match[1]) for match in progress if match]
    assert done == list(range(count + 1))  # 0/5 first, then one line per schema for a few
    assert {int(match[2]) for match in progress if match} == {count}
    assert SUMMARY.search(lines[-1]) is not None
    assert result.stdout == ""


def test_a_tenant_still_provisioning_is_skipped(
    fresh_database: Any, key_issuer: KeyIssuer, tmp_path: Path
) -> None:
    tenant_ids = make_tenants(fresh_database.url, key_issuer, 3)
    underway = tenant_ids[0]

    async def mark_provisioning() -> None:
        connection = await asyncpg.connect(fresh_database.admin_url)
        try:
            await connection.execute(
                "UPDATE tenants SET status = 'provisioning' WHERE id = $1", underway
            )
        finally:
            await connection.close()

    asyncio.run(mark_provisioning())
    folder = tenant_migrations(tmp_path / "migrations", "ALTER TABLE items ADD COLUMN note text;\n")

    result = migrate(fresh_database.url, folder)

    assert result.returncode == 0, result.stderr
    summary = SUMMARY.search(result.stderr)
    assert summary is not None, result.stderr
    assert tuple(map(int, summary.groups())) == (2, 0, 0, 2)
    versions = asyncio.run(schema_versions(fresh_database.admin_url))
    assert versions[TenantNames.of(underway).schema] == 1
    assert sorted(versions.values()) == [1, 2, 2]


def test_a_migrations_folder_with_a_gap_is_a_usage_error(
    fresh_database: Any, tmp_path: Path
) -> None:
    folder = tenant_migrations(tmp_path / "migrations", "SELECT 1;\n")
    (folder / "0002_note.sql").rename(folder / "0003_note.sql")

    result = migrate(fresh_database.url, folder)

    assert result.returncode == 2
    assert "expected version 2, found 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_loading_a_folder_that_is_not_there_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        load_migrations_from(tmp_path / "missing")


def test_progress_on_a_terminal_is_a_bar_not_lines(
    fresh_database: Any, key_issuer: KeyIssuer, tmp_path: Path
) -> None:
    import pty

    make_tenants(fresh_database.url, key_issuer, 3)
    folder = tenant_migrations(tmp_path / "migrations", "ALTER TABLE items ADD COLUMN note text;\n")
    main, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "migrate", "--tenant-migrations", str(folder)],
            env=environment(fresh_database.url) | {"TERM": "xterm", "COLUMNS": "100"},
            stdout=subprocess.DEVNULL,
            stderr=terminal,
        ) as run:
            os.close(terminal)
            terminal = -1
            shown = b""
            while True:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the other end closed: the command is done
                    break
                if not chunk:
                    break
                shown += chunk
            assert run.wait(timeout=60) == 0, shown
    finally:
        os.close(main)
        if terminal >= 0:
            os.close(terminal)
    text = shown.decode(errors="replace")
    assert "tenant schemas" in text
    assert "\x1b[" in text  # drawn with terminal controls
    assert re.search(r"\d+/\d+ tenant schemas \(migrated", text) is None  # not plain lines
    assert SUMMARY.search(text) is not None
