"""The command line's contract apart from ``dev``: usage and configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _tenantgate(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    clean = {
        name: value for name, value in os.environ.items() if not name.startswith("TENANTGATE_")
    }
    return subprocess.run(
        [sys.executable, "-m", "tenantgate", *args],
        env=clean | environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_without_configuration_names_the_variable_and_exits_2() -> None:
    result = _tenantgate("serve", "--port", "1")
    assert result.returncode == 2
    assert "TENANTGATE_DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_serve_with_a_malformed_setting_names_it() -> None:
    result = _tenantgate(
        "serve",
        TENANTGATE_DATABASE_URL="postgresql://u:p@127.0.0.1:1/db",
        TENANTGATE_REDIS_URL="redis://127.0.0.1:1/0",
        TENANTGATE_ADMIN_TOKEN="admin-token-0123456789",
        TENANTGATE_KEY_PEPPER="not hex",
    )
    assert result.returncode == 2
    assert "TENANTGATE_KEY_PEPPER" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["audit", "verify"]])
def test_future_commands_exist_and_say_so(command: list[str]) -> None:
    result = _tenantgate(*command)
    assert result.returncode == 2
    assert "not implemented yet" in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = _tenantgate("launch")
    assert result.returncode == 2
    assert "usage:" in result.stderr
