"""The command line's contract apart from ``dev``: usage and configuration errors."""

from __future__ import annotations

import pytest


def test_serve_without_configuration_names_the_variable_and_exits_2(run_tenantgate) -> None:
    result = run_tenantgate("serve", "--port", "1")
    assert result.returncode == 2
    assert "TENANTGATE_DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_serve_with_a_malformed_setting_names_it(run_tenantgate) -> None:
    result = run_tenantgate(
        "serve",
        environ={
            "TENANTGATE_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db",
            "TENANTGATE_REDIS_URL": "redis://127.0.0.1:1/0",
            "TENANTGATE_ADMIN_TOKEN": "admin-token-0123456789",
            "TENANTGATE_KEY_PEPPER": "not hex",
        },
    )
    assert result.returncode == 2
    assert "TENANTGATE_KEY_PEPPER" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["audit", "verify"]])
def test_future_commands_exist_and_say_so(run_tenantgate, command: list[str]) -> None:
    result = run_tenantgate(*command)
    assert result.returncode == 2
    assert "not implemented yet" in result.stderr


def test_unknown_command_is_a_usage_error(run_tenantgate) -> None:
    result = run_tenantgate("launch")
    assert result.returncode == 2
    assert "usage:" in result.stderr
